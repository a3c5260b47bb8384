"""
A frame-level HTTP/2 client for the transport's end-to-end tests: raw
frames built with ``hyperframe`` and ``hpack`` (so a test can send what no
well-behaved client would), over h2c (prior knowledge) or TLS with ALPN
``h2``. Floods are serialized once, up front, so that the attacker spends
no CPU building them while the probe is timed.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterable

from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GOAWAY = 0x7
ERROR_CODES = {
    "NO_ERROR": 0x0,
    "PROTOCOL_ERROR": 0x1,
    "FLOW_CONTROL_ERROR": 0x3,
    "ENHANCE_YOUR_CALM": 0xB,
}


def connect(port: int, *, tls: bool = False, timeout: float = 10.0) -> socket.socket:
    """A connection to 127.0.0.1:``port`` speaking HTTP/2 (ALPN ``h2`` with TLS)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not tls:
        return sock
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    wrapped = context.wrap_socket(sock)
    assert wrapped.selected_alpn_protocol() == "h2", wrapped.selected_alpn_protocol()
    return wrapped


def opening() -> bytes:
    """The client preface and an empty SETTINGS frame."""
    return PREFACE + SettingsFrame(0).serialize()


class Frames:
    """Builds a client's frames; one HPACK encoder per connection."""

    def __init__(self) -> None:
        self.encoder = Encoder()

    def headers(
        self,
        stream_id: int,
        path: str = "/",
        *,
        method: str = "GET",
        end_stream: bool = True,
        end_headers: bool = True,
        extra: Iterable[tuple[str, str]] = (),
    ) -> bytes:
        block = self.encoder.encode(
            [
                (":method", method),
                (":path", path),
                (":scheme", "http"),
                (":authority", "127.0.0.1"),
                *extra,
            ]
        )
        frame = HeadersFrame(stream_id, block)
        if end_stream:
            frame.flags.add("END_STREAM")
        if end_headers:
            frame.flags.add("END_HEADERS")
        return bytes(frame.serialize())


def continuation(stream_id: int, payload: bytes, *, end: bool = False) -> bytes:
    frame = ContinuationFrame(stream_id, payload)
    if end:
        frame.flags.add("END_HEADERS")
    return bytes(frame.serialize())


def rst(stream_id: int, code: int = 0) -> bytes:
    return bytes(RstStreamFrame(stream_id, code).serialize())


def data(stream_id: int, payload: bytes, *, end_stream: bool = False) -> bytes:
    frame = DataFrame(stream_id, payload)
    if end_stream:
        frame.flags.add("END_STREAM")
    return bytes(frame.serialize())


def ping(opaque: bytes) -> bytes:
    return bytes(PingFrame(0, opaque).serialize())


def window_update(stream_id: int, increment: int) -> bytes:
    return bytes(WindowUpdateFrame(stream_id, increment).serialize())


def raw_data_on_stream_zero(payload: bytes) -> bytes:
    """A DATA frame on stream 0: a connection error (RFC 9113 §6.1)."""
    length = len(payload)
    head = length.to_bytes(3, "big") + b"\x00\x00" + (0).to_bytes(4, "big")
    return head + payload


def read_frames(data: bytes) -> list[Frame]:
    """The whole frames in ``data`` (server to client; no preface)."""
    frames: list[Frame] = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            break
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


def goaways(data: bytes) -> list[GoAwayFrame]:
    return [f for f in read_frames(data) if isinstance(f, GoAwayFrame)]


def read_until_closed(sock: socket.socket, limit: float = 10.0) -> bytes:
    """What arrives until the server closes, a reset, or ``limit`` seconds."""
    received = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError, ssl.SSLError, OSError):
            break
        if not chunk:
            break
        received += chunk
    return received


def flood(sock: socket.socket, chunk: bytes, total: int, seconds: float) -> int:
    """
    Send ``chunk`` again and again, reading nothing, until ``total`` bytes
    went, ``seconds`` passed, or the server stopped taking them (a reset, a
    close, or its window full for one second); returns the bytes sent.
    """
    sent = 0
    deadline = time.monotonic() + seconds
    sock.settimeout(1.0)
    while sent < total and time.monotonic() < deadline:
        try:
            sock.sendall(chunk)
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            break
        except OSError:
            break
        sent += len(chunk)
    return sent
