"""
The HTTP/2 load generator of ``bench/http2.py``: SSE subscribers as streams
multiplexed over h2c (prior knowledge) connections, with the same
commands and output as ``sse_client.c``:

    http2_client.py idle PORT N              prints "ready SECONDS", then holds
                                          the streams until stdin closes
    http2_client.py burst PORT N EVENTS PAD  one POST (HTTP/1.1) publishes
                                          EVENTS; prints "deliveries
                                          seconds p50_ms p99_ms cpu_s"

Each connection carries up to ``PER_CONNECTION`` streams (the server's
``SETTINGS_MAX_CONCURRENT_STREAMS`` is 100). Written in Python on the
``h2`` library, so it costs more per event than the C client: the last
column is its own CPU time, to tell when it, not the server, is the limit.
"""

from __future__ import annotations

import http.client
import os
import re
import selectors
import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

PER_CONNECTION = 100
PREFIX = re.compile(rb'"t":([0-9.]+)')


class Connection:
    def __init__(self, port: int, streams: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.h2.initiate_connection()
        # Windows wide enough that flow control never paces a burst.
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**30})
        self.h2.increment_flow_control_window(2**30)
        for _ in range(streams):
            self.h2.send_headers(
                self.h2.get_next_available_stream_id(),
                [
                    (":method", "GET"),
                    (":path", "/events"),
                    (":scheme", "http"),
                    (":authority", "127.0.0.1"),
                ],
                end_stream=True,
            )
        self.sock.sendall(self.h2.data_to_send())
        self.sock.setblocking(False)
        self.heads = 0
        self.tails: dict[int, bytes] = {}

    def readable(self, latencies: list[float]) -> int:
        """Handle what is ready; return the events delivered in it."""
        delivered = 0
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not data:
                raise SystemExit("a connection closed")
            arrived = time.time()
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    stream_id = event.stream_id
                    buffer = self.tails.get(stream_id, b"") + event.data
                    end = buffer.rfind(b"\n\n") + 2
                    for found in PREFIX.finditer(buffer, 0, end):
                        latencies.append(arrived - float(found.group(1)))
                        delivered += 1
                    self.tails[stream_id] = buffer[end:]
                elif isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers).get(":status")
                    if status != "200":
                        raise SystemExit(f"not 200: {event.headers}")
                    self.heads += 1
                elif isinstance(event, h2.events.StreamReset | h2.events.StreamEnded):
                    raise SystemExit(f"a subscriber ended: {event}")
            out = self.h2.data_to_send()
            if out:
                self.sock.setblocking(True)
                self.sock.sendall(out)
                self.sock.setblocking(False)
        return delivered


def open_streams(port: int, count: int) -> tuple[list[Connection], float]:
    """Open ``count`` streams; return the connections once every head arrived."""
    started = time.perf_counter()
    connections = []
    left = count
    while left:
        n = min(left, PER_CONNECTION)
        connections.append(Connection(port, n))
        left -= n
    selector = selectors.DefaultSelector()
    for c in connections:
        selector.register(c.sock, selectors.EVENT_READ, c)
    ignored: list[float] = []
    while sum(c.heads for c in connections) < count:
        for key, _ in selector.select(timeout=60):
            key.data.readable(ignored)
    selector.close()
    return connections, time.perf_counter() - started


def burst(port: int, count: int, events: int, pad: str) -> None:
    connections, _ = open_streams(port, count)
    selector = selectors.DefaultSelector()
    for c in connections:
        selector.register(c.sock, selectors.EVENT_READ, c)
    latencies: list[float] = []
    expected = count * events
    delivered = 0

    def publish() -> None:
        publisher = http.client.HTTPConnection("127.0.0.1", port)
        publisher.request("POST", f"/publish?seq=0&count={events}&pad={pad}")
        publisher.getresponse().read()

    cpu = time.process_time()
    started = time.perf_counter()
    threading.Thread(target=publish, daemon=True).start()
    while delivered < expected:
        ready = selector.select(timeout=120)
        if not ready:
            raise SystemExit(f"only {delivered} of {expected} deliveries")
        for key, _ in ready:
            delivered += key.data.readable(latencies)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    latencies.sort()
    n = len(latencies)
    print(
        f"{delivered} {elapsed:.6f} {latencies[n // 2] * 1000:.3f} "
        f"{latencies[int(n * 0.99)] * 1000:.3f} {cpu:.3f}",
        flush=True,
    )


def main() -> None:
    command, port, count, *rest = sys.argv[1:]
    if command == "idle":
        connections, seconds = open_streams(int(port), int(count))
        print(f"ready {seconds:.6f}", flush=True)
        sys.stdin.read()
        for c in connections:
            c.sock.close()
    elif command == "burst":
        events, pad = rest
        burst(int(port), int(count), int(events), pad)
    else:
        raise SystemExit(__doc__)
    os._exit(0)


if __name__ == "__main__":
    main()
