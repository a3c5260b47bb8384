"""
The hub across processes (issue 29): what one publish costs Redis, and how
fast one process publishes through Redis beside the in-memory hub, in the
same run. A script that prints numbers, not a test.

    python bench/hub_scale.py [--repeat 5] [--publishes 20000]
                              [--channels 1000] [--history 1000]
                              [--no-cluster]

Each round, alternating:

- "memory": ``hub.publish`` on the in-memory hub, ``--publishes`` events of
  ~100 B over ``--channels`` channels, awaited 1,000 at a time, nobody
  subscribed: publishes/s.
- "redis": the same through a ``redis-server`` (started here, on CPU 1;
  the publisher on CPU 0), every channel's history full (``--history``
  events each, filled before the first round: every publish evicts):
  publishes/s, the Redis CPU per publish from ``INFO commandstats`` (the
  publish script's ``usec``, which counts the commands it runs, over the
  publishes: a call publishes a reactor turn's batch)
  and Redis's CPU for all its commands over the round.
- "cluster": the same through a local Redis Cluster of three primaries
  (``redis-server --cluster-enabled``, all on CPU 1), histories full too:
  publishes/s, and each primary's CPU over the round (``INFO cpu``, main
  thread) and time in the publish script (``INFO commandstats``) as a
  share of the single Redis's in the same round (a third each is perfect
  spreading).

Printed: the median (min-max) of ``--repeat`` rounds, and the ratio of the
medians (redis / memory). Issue 29's targets: Redis CPU per publish at most
15 us (110-120 before), the rate through Redis at least 0.3x memory's, and
each Cluster primary at most 40% of the single Redis's CPU.
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
from oxian_tw.hub import ClusterHub, MemoryHub, RedisHub
from oxian_tw.hub._address import parse_cluster_url, parse_redis_url

kind, publishes, channels, history, fill = sys.argv[1], *map(int, sys.argv[2:6])
url = sys.argv[6] if len(sys.argv) > 6 else ""
PAD = "x" * 60
if kind == "memory":
    hub = MemoryHub(lambda: reactor, history=history)
elif kind == "cluster":
    hub = ClusterHub(parse_cluster_url(url), lambda: reactor, history=history)
else:
    hub = RedisHub(parse_redis_url(url), lambda: reactor, history=history)

async def run(count, offset):
    for k in range(0, count, 1000):
        await defer.gatherResults([
            hub.publish(f"ch{(offset + k + i) % channels}", {"n": k + i, "p": PAD})
            for i in range(min(1000, count - k))
        ])

async def main():
    if kind != "memory":
        # Fill every channel's history: from here each publish evicts.
        await run(channels * history if fill else 2000, 0)
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


def commandstats(port: int) -> dict[str, dict[str, float]]:
    """``INFO commandstats`` of one server: command -> its fields."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "commandstats"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stats = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            fields = dict(f.split("=") for f in rest.split(","))
            stats[name[8:]] = {k: float(v) for k, v in fields.items()}
    return stats


def scripts_time(port: int) -> float:
    """Microseconds in scripts (``EVALSHA``, ``EVAL``) since ``RESETSTAT``."""
    stats = commandstats(port)
    return sum(stats.get(name, {}).get("usec", 0.0) for name in ("evalsha", "eval"))


def cpu_seconds(port: int) -> float:
    """CPU seconds of the server's main thread (``INFO cpu``), user + system."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "cpu"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fields = dict(
        line.split(":", 1) for line in out.splitlines() if line.startswith("used_cpu")
    )
    return float(fields["used_cpu_user_main_thread"]) + float(
        fields["used_cpu_sys_main_thread"]
    )


def reset_stats(ports: list[int]) -> None:
    for port in ports:
        subprocess.run(
            ["redis-cli", "-p", str(port), "CONFIG", "RESETSTAT"],
            check=True,
            capture_output=True,
        )


def redis_cpu(port: int, publishes: int) -> float:
    """
    The publish script's microseconds per publish since the last reset (a
    call publishes a turn's batch: its time over the publishes made).
    """
    stats = commandstats(port)
    if "evalsha" not in stats:
        raise SystemExit("no EVALSHA counted")
    return stats["evalsha"]["usec"] / publishes


def one_round(
    kind: str, args: argparse.Namespace, url: str, ports: list[int], fill: bool
) -> dict[str, float]:
    command = [
        sys.executable,
        "-c",
        ROUND,
        kind,
        str(args.publishes),
        str(args.channels),
        str(args.history),
        str(int(fill)),
    ]
    if url:
        command.append(url)
    process = subprocess.Popen(
        pinned(0, command),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    before: list[float] = []
    if ports:
        line = process.stdout.readline()
        if line.strip() != "filled":
            raise SystemExit(f"the publisher failed: {line!r}")
        reset_stats(ports)
        before = [cpu_seconds(port) for port in ports]
        process.stdin.write("go\n")
        process.stdin.flush()
    out = process.stdout.readline()
    process.wait(timeout=3600)
    import json

    result: dict[str, float] = json.loads(out)
    for index, port in enumerate(ports):
        result[f"scripts{index}"] = scripts_time(port)
        result[f"cpu{index}"] = cpu_seconds(port) - before[index]
    if kind == "redis":
        result["redis us"] = redis_cpu(ports[0], args.publishes)
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
    parser.add_argument("--no-cluster", action="store_true")
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        raise SystemExit("needs redis-server (apt-get install redis-server)")
    from tests.helpers import RedisCluster

    directory = tempfile.mkdtemp(prefix="oxian-hub-scale-")
    redis = RedisServer(directory)
    cluster = None
    kinds = ["memory", "redis"]
    if not args.no_cluster:
        cluster = RedisCluster(os.path.join(directory, "cluster"), replicas=0)
        kinds.append("cluster")
    # Redis on the load generator's core, the publisher on the server's.
    pids = [redis.server.process.pid]
    if cluster is not None:
        pids += [n.process.pid for n in cluster.nodes.values()]
    for pid in pids:
        subprocess.run(["taskset", "-pc", "1", str(pid)], capture_output=True)
    where = {
        "memory": ("", []),
        "redis": (redis.url(0), [redis.port]),
    }
    if cluster is not None:
        where["cluster"] = (cluster.url(3), cluster.ports)
    results: dict[str, dict[str, list[float]]] = {kind: {} for kind in kinds}
    try:
        for index in range(args.repeat):
            for kind in kinds:
                url, ports = where[kind]
                out = one_round(kind, args, url, ports, fill=index == 0)
                for key, value in out.items():
                    results[kind].setdefault(key, []).append(value)
    finally:
        redis.stop()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"hub publish: {args.publishes} publishes of ~100 B over {args.channels} "
        f"channels (history {args.history} each, full); median (min-max) of "
        f"{args.repeat}, rounds interleaved"
    )
    print(f"{'':<30}" + "".join(f"{kind:>28}" for kind in kinds))
    print(
        f"{'publishes/s':<30}"
        + "".join(f"{spread(results[kind]['rate']):>28}" for kind in kinds)
    )
    cpu = spread(results["redis"]["redis us"])
    print(f"{'Redis CPU per publish, us':<30}{'':>28}{cpu:>28}")
    memory = statistics.median(results["memory"]["rate"])
    for kind in kinds[1:]:
        ratio = statistics.median(results[kind]["rate"]) / memory
        print(f"rate through {kind} / in memory: {ratio:.2f}x")
    if cluster is not None:
        print(
            "each Cluster primary as a share of the single Redis, same publishes "
            "(CPU: INFO cpu, main thread; scripts: time in EVALSHA from INFO "
            "commandstats, which is wall time: inflated when the three primaries "
            "share CPU 1)"
        )
        for measure in ("cpu", "scripts"):
            single = results["redis"][f"{measure}0"]
            for index in range(len(cluster.ports)):
                shares = [
                    100 * primary / alone
                    for primary, alone in zip(
                        results["cluster"][f"{measure}{index}"], single, strict=True
                    )
                ]
                print(f"  primary {index} {measure:<8} {spread(shares)} %")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
