# -*- test-case-name: tests.test_modules -*-
"""
Importing a route tree once per process (SPEC §2, "Shared module state").

The tree becomes a synthetic package whose name derives from its absolute
path. Every folder is a package of it and every file a module, registered in
``sys.modules`` under one stable name, so ``from .events import clients`` in
a sibling reaches the very module object the router loaded. File names that
are not identifiers (``[id].py``, ``users.csv.py``) get names that cannot
collide with an identifier: only ``.`` needs escaping, since it would read as
a package separator.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from importlib.machinery import ModuleSpec
from types import ModuleType

from ._errors import RouteTreeError


def _component(name: str) -> str:
    return name.replace(".", "%2E")


class RouteModules:
    """
    Loads the files of one route tree, each exactly once per process.

    :param root: the route directory.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        digest = hashlib.sha1(self.root.encode("utf-8")).hexdigest()[:12]
        self.package = f"_oxian_routes_{digest}"

    def _package_for(self, relative_dir: str) -> str:
        name = self.package
        directory = self.root
        self._ensure_package(name, directory)
        for part in filter(None, relative_dir.split("/")):
            name = f"{name}.{_component(part)}"
            directory = os.path.join(directory, part)
            self._ensure_package(name, directory)
        return name

    def _ensure_package(self, name: str, directory: str) -> None:
        if name in sys.modules:
            return
        init = os.path.join(directory, "__init__.py")
        if os.path.isfile(init):
            self._execute(name, init, package_dir=directory)
            return
        module = ModuleType(name)
        spec = ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [directory]
        module.__spec__ = spec
        module.__path__ = [directory]
        module.__package__ = name
        sys.modules[name] = module

    def module_name(self, relative: str) -> str:
        """The ``sys.modules`` name of the file at ``relative``."""
        directory, _, file_name = relative.rpartition("/")
        stem = file_name[: -len(".py")]
        return f"{self._package_for(directory)}.{_component(stem)}"

    def load(self, relative: str) -> ModuleType:
        """
        The module for the file at ``relative`` (``/``-separated), imported
        on first use.

        :raises RouteTreeError: naming the file and line when it fails to
            import.
        """
        name = self.module_name(relative)
        existing = sys.modules.get(name)
        if existing is not None:
            return existing
        return self._execute(name, os.path.join(self.root, relative))

    def _execute(
        self, name: str, path: str, package_dir: str | None = None
    ) -> ModuleType:
        locations = [package_dir] if package_dir is not None else None
        spec = importlib.util.spec_from_file_location(
            name, path, submodule_search_locations=locations
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            del sys.modules[name]
            raise RouteTreeError(_describe_import_error(path, exc)) from exc
        return module


def _describe_import_error(path: str, exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}"
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if os.path.abspath(f.filename) == os.path.abspath(path)
    ]
    where = f"{path}:{frames[-1].lineno}" if frames else path
    return f"{where}: {type(exc).__name__}: {exc}"
