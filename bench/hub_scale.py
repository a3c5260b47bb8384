"""
The hub across processes (issue 29): what one publish costs Redis, and how
fast one process publishes through Redis beside the in-memory hub, in the
same run. A script that prints numbers, not a test.

    python bench/hub_scale.py [--repeat 5] [--publishes 20000]
                              [--channels 1000] [--history 1000]

Each round, alternating:

- "memory": ``hub.publish`` on the in-memory hub, ``--publishes`` events of
  ~100 B over ``--channels`` channels, awaited 1,000 at a time, nobody
  subscribed: publishes/s.
- "redis": the same through a ``redis-server`` (started here, on CPU 1;
  this process on CPU 0), once every channel's history is full
  (``--history`` events each: every publish evicts): publishes/s, and the
  Redis CPU per publish from ``INFO commandstats`` (the publish script's
  ``usec_per_call``, which counts the commands it runs).

Printed: the median (min-max) of ``--repeat`` rounds, and the ratio of the
medians (redis / memory). Issue 29's targets: Redis CPU per publish at most
15 us (110-120 before), and the rate through Redis at least 0.3x memory's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from _common import TOP, RedisServer, pinned

ROUND = r"""
import sys, time, json
sys.path.insert(0, TOP)
from twisted.internet import reactor, defer
from oxian_tw.hub import MemoryHub, RedisHub
from oxian_tw.hub._client import parse_redis_url

kind, publishes, channels, history = sys.argv[1], *map(int, sys.argv[2:5])
url = sys.argv[5] if len(sys.argv) > 5 else ""
PAD = "x" * 60
if kind == "memory":
    hub = MemoryHub(lambda: reactor, history=history)
else:
    hub = RedisHub(parse_redis_url(url), lambda: reactor, history=history)

async def run(count, offset):
    for k in range(0, count, 1000):
        await defer.gatherResults([
            hub.publish(f"ch{(offset + k + i) % channels}", {"n": k + i, "p": PAD})
            for i in range(min(1000, count - k))
        ])

async def main():
    if kind == "redis":
        # Fill every channel's history: from here each publish evicts.
        await run(channels * history, 0)
        print("filled", flush=True)
        sys.stdin.readline()
    else:
        await run(2000, 0)
    started = time.perf_counter()
    await run(publishes, 0)
    print(json.dumps({"rate": publishes / (time.perf_counter() - started)}))
    reactor.stop()

reactor.callWhenRunning(lambda: defer.ensureDeferred(main()))
reactor.run()
""".replace("TOP", repr(TOP))


def redis_cpu(port: int) -> float:
    """The publish script's microseconds per call since the last reset."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "commandstats"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith("cmdstat_evalsha:"):
            fields = dict(f.split("=") for f in line.split(":", 1)[1].split(","))
            return float(fields["usec_per_call"])
    raise SystemExit("no EVALSHA counted")


def one_round(
    kind: str, args: argparse.Namespace, redis: RedisServer | None
) -> dict[str, float]:
    command = [
        sys.executable,
        "-c",
        ROUND,
        kind,
        str(args.publishes),
        str(args.channels),
        str(args.history),
    ]
    if redis is not None:
        command.append(redis.url(0))
        subprocess.run(
            ["redis-cli", "-p", str(redis.port), "FLUSHALL"],
            check=True,
            capture_output=True,
        )
    process = subprocess.Popen(
        pinned(0, command),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    result: dict[str, float] = {}
    if redis is not None:
        line = process.stdout.readline()
        if line.strip() != "filled":
            raise SystemExit(f"the publisher failed: {line!r}")
        subprocess.run(
            ["redis-cli", "-p", str(redis.port), "CONFIG", "RESETSTAT"],
            check=True,
            capture_output=True,
        )
        process.stdin.write("go\n")
        process.stdin.flush()
    out = process.stdout.readline()
    process.wait(timeout=600)
    import json

    result.update(json.loads(out))
    if redis is not None:
        result["redis us"] = redis_cpu(redis.port)
    return result


def spread(values: list[float]) -> str:
    median, low, high = statistics.median(values), min(values), max(values)
    digits = 0 if median >= 100 else 1
    return f"{median:,.{digits}f} ({low:,.{digits}f}-{high:,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--publishes", type=int, default=20000)
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--history", type=int, default=1000)
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        raise SystemExit("needs redis-server (apt-get install redis-server)")
    directory = tempfile.mkdtemp(prefix="oxian-hub-scale-")
    redis = RedisServer(directory)
    # Redis on the load generator's core, the publisher on the server's.
    subprocess.run(
        ["taskset", "-pc", "1", str(redis.server.process.pid)], capture_output=True
    )
    results: dict[str, dict[str, list[float]]] = {"memory": {}, "redis": {}}
    try:
        for _ in range(args.repeat):
            for kind in ("memory", "redis"):
                out = one_round(kind, args, redis if kind == "redis" else None)
                for key, value in out.items():
                    results[kind].setdefault(key, []).append(value)
    finally:
        redis.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"hub publish: {args.publishes} publishes of ~100 B over {args.channels} "
        f"channels (history {args.history} each, full); median (min-max) of "
        f"{args.repeat}, rounds interleaved"
    )
    print(f"{'':<28}{'memory':>28}{'redis':>28}")
    print(
        f"{'publishes/s':<28}{spread(results['memory']['rate']):>28}"
        f"{spread(results['redis']['rate']):>28}"
    )
    cpu = spread(results["redis"]["redis us"])
    print(f"{'Redis CPU per publish, us':<28}{'':>28}{cpu:>28}")
    ratio = statistics.median(results["redis"]["rate"]) / statistics.median(
        results["memory"]["rate"]
    )
    print(f"rate through Redis / in memory: {ratio:.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
