"""
Packaging for oxian_tw.

``twisted.plugins`` is listed explicitly so that ``twistd`` finds the
``oxian`` plugin; that directory deliberately has no ``__init__.py``.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup


def _version() -> str:
    """oxian_tw/_version.py's, the one place the version is written."""
    text = (Path(__file__).parent / "oxian_tw" / "_version.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


setup(
    name="oxian_tw",
    version=_version(),
    description="File-based routes, streaming and Server-Sent Events on Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["oxian_tw", "oxian_tw.*"]) + ["twisted.plugins"],
    package_data={
        "twisted.plugins": ["oxian_plugin.py", "oxian_reactors.py"],
        "oxian_tw": ["py.typed", "static/*.js"],
        "oxian_tw.hub": ["lua/*.lua"],
    },
    install_requires=[
        # 26.10: Request(parsePOSTFormSubmission=False), so bodies are parsed
        # once, by the app (issue 28).
        "twisted[tls,http2]>=26.10",
        "attrs>=23.1",
        # ctx.response.pipe(response) relays what treq fetches.
        "treq>=23.11",
        # oxian_tw.metrics, --metrics
        "prometheus-client>=0.20",
        # The hub's Redis protocol (RESP3 parsing and packing, in C).
        "hiredis>=3.0",
        # oxian_tw.tokens: stream tokens (JWT), not hand-written crypto.
        "PyJWT>=2.8",
        # Compressed responses and streams (SPEC §17, --compress): brotli
        # and Zstandard beside the standard library's zlib (gzip).
        "brotli>=1.1",
        "zstandard>=0.22",
        # Declared data (SPEC §3): the constraints an Annotated field carries
        # (Ge, Le, Interval, MaxLen...), the vocabulary pydantic shares.
        "annotated-types>=0.6",
        # HTTP/1.1 parsed in C (llhttp, uvicorn's parser): --http-parser.
        "httptools>=0.6",
    ],
    extras_require={
        # python -m oxian_tw dev: the server, restarted on every change.
        "dev": ["watchfiles>=0.21"],
        # Only for examples/klein_app.py and its tests: oxian_tw itself
        # does not import Klein.
        "klein": ["klein>=24.8"],
        # twistd -r uvloop: the asyncio reactor over uvloop.
        "uvloop": ["uvloop>=0.19"],
        # The docs, built or served (mkdocs serve): the versions tox builds.
        "docs": [
            "mkdocs>=1.6",
            "pymdown-extensions>=10",
            "mkdocstrings[python]>=0.26",
        ],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
    ],
)
