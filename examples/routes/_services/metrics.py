"""This process's real CPU use, memory and open SSE streams."""

import os
import resource
import time


class MetricsService:
    """CPU is measured between two calls (the first call covers process life)."""

    def __init__(self):
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self._started = time.time()

    def get_current_metrics(self, app):
        wall, cpu = time.monotonic(), time.process_time()
        elapsed = max(wall - self._wall, 1e-9)
        cpu_percent = 100.0 * (cpu - self._cpu) / elapsed
        self._wall, self._cpu = wall, cpu
        return {
            "cpu_percent": round(cpu_percent, 1),
            "memory_rss_bytes": _rss_bytes(),
            "open_streams": len(app.streams),
            "uptime_seconds": round(time.time() - self._started, 1),
            "pid": os.getpid(),
            "timestamp": int(time.time() * 1000),
        }


def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        # Not Linux: the peak is what getrusage offers (KiB on Linux/BSD).
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
