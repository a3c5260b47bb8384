# -*- test-case-name: tests.test_cors -*-
"""
Cross-origin resource sharing (SPEC §8, ``--cors-*``): which headers a
response gets for a request's ``Origin``.

Pure: strings in, header pairs out; the app puts them on every response it
writes (errors, streams and SSE included), before the handler runs so that
a handler may still override them.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ._config import Settings

Headers = list[tuple[str, str]]


@attrs.frozen
class CorsPolicy:
    """
    The CORS settings of an app.

    :ivar origins: the allowed origins (``*`` for any).
    :ivar credentials: credentialed requests are allowed: the origin is
        echoed, never ``*``.
    :ivar methods: what a preflight allows, joined; ``None``: the route's
        methods.
    :ivar headers: the request headers a preflight allows, joined; ``None``:
        the ones it asks for.
    :ivar expose: ``Access-Control-Expose-Headers``, or ``None``.
    :ivar max_age: ``Access-Control-Max-Age``, or ``None``.
    """

    origins: frozenset[str]
    credentials: bool = False
    methods: str | None = None
    headers: str | None = None
    expose: str | None = None
    max_age: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CorsPolicy | None:
        """The policy ``settings`` ask for; ``None`` when no origin is allowed."""
        if not settings.cors_origin:
            return None
        return cls(
            origins=frozenset(settings.cors_origin),
            credentials=settings.cors_credentials,
            methods=_joined(settings.cors_methods),
            headers=_joined(settings.cors_headers),
            expose=_joined(settings.cors_expose_headers),
            max_age=None
            if settings.cors_max_age is None
            else str(settings.cors_max_age),
        )

    @property
    def _wildcard(self) -> bool:
        # "*" answers alike for every origin, so caches need no Vary.
        return "*" in self.origins and not self.credentials

    def allows(self, origin: str | None) -> bool:
        """Whether a request from ``origin`` gets CORS headers."""
        return origin is not None and ("*" in self.origins or origin in self.origins)

    def response_headers(self, origin: str | None) -> Headers:
        """
        The headers of any response to a request from ``origin``:
        ``Vary: Origin`` whenever the answer depends on it, and the
        ``Access-Control-Allow-*`` headers when ``origin`` is allowed.
        """
        headers: Headers = [] if self._wildcard else [("Vary", "Origin")]
        if not self.allows(origin):
            return headers
        assert origin is not None
        headers.append(
            ("Access-Control-Allow-Origin", "*" if self._wildcard else origin)
        )
        if self.credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        if self.expose:
            headers.append(("Access-Control-Expose-Headers", self.expose))
        return headers

    def preflight_headers(
        self, origin: str | None, requested_headers: str | None, allow: str
    ) -> Headers:
        """
        The extra headers of a preflight answer (``OPTIONS`` with
        ``Access-Control-Request-Method``) from ``origin``.

        :param requested_headers: its ``Access-Control-Request-Headers``.
        :param allow: the route's ``Allow`` value.
        """
        if not self.allows(origin):
            return []
        headers: Headers = [("Access-Control-Allow-Methods", self.methods or allow)]
        if self.headers is not None:
            headers.append(("Access-Control-Allow-Headers", self.headers))
        elif requested_headers:
            headers.append(("Access-Control-Allow-Headers", requested_headers))
            headers.append(
                (
                    "Vary",
                    "Access-Control-Request-Headers"
                    if self._wildcard
                    else "Origin, Access-Control-Request-Headers",
                )
            )
        if self.max_age is not None:
            headers.append(("Access-Control-Max-Age", self.max_age))
        return headers


def _joined(names: Sequence[str] | None) -> str | None:
    return ", ".join(names) if names else None
