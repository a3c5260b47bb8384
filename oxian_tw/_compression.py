# -*- test-case-name: tests.test_compression -*-
"""
Compression (SPEC §17), sans-I/O: which coding a request's
``Accept-Encoding`` allows, which content types are worth it, and one
encoder class per coding that compresses and flushes what a stream hands
on in a turn, so no event waits in the compressor.

Every setting is written here once and bounded, so an encoder's memory is
known and counted in its stream's budget:

- ``zstd`` (zstandard): level 3, window 2^16, hash and chain tables
  2^13; counted as zstandard's own estimate, 329 KiB.
- ``br`` (Google's brotli): quality 5, window 2^16; counted as 320 KiB
  (277 measured once it has compressed).
- ``gzip`` (the standard library's zlib): level 6, window 2^13, memLevel
  6; counted as 72 KiB (zlib's formula gives 64, plus its state).

The server's order of preference is zstd, br, gzip: among the codings the
client accepts with the same (highest) ``q``, the first of these.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import ClassVar, Protocol

import brotli
import zstandard

#: The codings the server offers, in its order of preference.
PREFERENCE = ("zstd", "br", "gzip")
#: A plain (not streamed) response is compressed from this many bytes.
MIN_PLAIN = 1024

# Content types worth compressing (the type, parameters stripped).
_COMPRESSIBLE_TYPES = frozenset(
    {
        b"application/json",
        b"application/javascript",
        b"application/xml",
        b"application/x-ndjson",
        b"application/ld+json",
        b"image/svg+xml",
    }
)


class Encoder(Protocol):
    """One stream's compressor."""

    #: The ``Content-Encoding`` token.
    name: ClassVar[str]
    #: Bytes of memory it may hold: counted in its stream's budget.
    memory: ClassVar[int]

    def compress(self, data: bytes) -> bytes:
        """``data`` compressed and flushed: the client can decode all of it."""

    def finish(self) -> bytes:
        """The end of the compressed body."""


class GzipEncoder:
    """gzip through zlib (``Z_SYNC_FLUSH`` after every hand-on)."""

    name: ClassVar[str] = "gzip"
    memory: ClassVar[int] = 72 * 1024
    __slots__ = ("_zlib",)

    def __init__(self) -> None:
        # 16 + 13: a gzip wrapper around a 2^13-byte window.
        self._zlib = zlib.compressobj(6, zlib.DEFLATED, 16 + 13, 6)

    def compress(self, data: bytes) -> bytes:
        return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._zlib.flush(zlib.Z_FINISH)


class BrotliEncoder:
    """Brotli (``flush`` after every hand-on)."""

    name: ClassVar[str] = "br"
    memory: ClassVar[int] = 320 * 1024
    __slots__ = ("_brotli",)

    def __init__(self) -> None:
        self._brotli = brotli.Compressor(quality=5, lgwin=16)

    def compress(self, data: bytes) -> bytes:
        return bytes(self._brotli.process(data) + self._brotli.flush())

    def finish(self) -> bytes:
        return bytes(self._brotli.finish())


_ZSTD_PARAMETERS = zstandard.ZstdCompressionParameters.from_level(
    3, window_log=16, hash_log=13, chain_log=13
)


class ZstdEncoder:
    """Zstandard (a block flush after every hand-on)."""

    name: ClassVar[str] = "zstd"
    memory: ClassVar[int] = _ZSTD_PARAMETERS.estimated_compression_context_size()
    __slots__ = ("_zstd",)

    def __init__(self) -> None:
        compressor = zstandard.ZstdCompressor(compression_params=_ZSTD_PARAMETERS)
        self._zstd = compressor.compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._zstd.compress(data) + self._zstd.flush(
            zstandard.COMPRESSOBJ_FLUSH_BLOCK
        )

    def finish(self) -> bytes:
        return self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


#: The encoder class of each coding.
ENCODERS: dict[str, type[GzipEncoder | BrotliEncoder | ZstdEncoder]] = {
    "zstd": ZstdEncoder,
    "br": BrotliEncoder,
    "gzip": GzipEncoder,
}


def negotiate(accept_encoding: Iterable[bytes] | None) -> str | None:
    """
    The coding to answer with for these ``Accept-Encoding`` header values,
    or None (identity): the highest ``q`` the client gives one of
    `PREFERENCE`, ties broken by `PREFERENCE`; ``q=0`` refuses; ``*``
    stands for every coding not named.
    """
    if not accept_encoding:
        return None
    weights: dict[str, float] = {}
    for value in accept_encoding:
        for item in value.split(b","):
            token, _, params = item.partition(b";")
            name = token.strip().lower().decode("latin-1")
            if not name:
                continue
            q = 1.0
            for param in params.split(b";"):
                key, _, number = param.partition(b"=")
                if key.strip().lower() == b"q":
                    try:
                        q = float(number.strip())
                    except ValueError:
                        q = 0.0
                    if not 0.0 <= q <= 1.0:
                        q = 0.0
            weights[name] = q
    star = weights.get("*")
    best: str | None = None
    best_q = 0.0
    for name in PREFERENCE:
        q = weights.get(name, star if star is not None else 0.0)
        if q > best_q:
            best, best_q = name, q
    return best


def compressible(content_type: bytes | None) -> bool:
    """Whether a body of ``content_type`` is worth compressing."""
    if not content_type:
        return False
    kind = content_type.split(b";", 1)[0].strip().lower()
    return (
        kind.startswith(b"text/")
        or kind in _COMPRESSIBLE_TYPES
        or kind.endswith((b"+json", b"+xml"))
    )


def compress_whole(name: str, data: bytes) -> bytes:
    """``data`` as one complete body in the coding ``name``."""
    encoder = ENCODERS[name]()
    return encoder.compress(data) + encoder.finish()
