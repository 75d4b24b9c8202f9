"""Small helpers shared by the benchmark's orchestrator and its worker processes (stdlib only, so a worker that
imports this module pays nothing for it in memory)."""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

TENANT = "bench"
CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-client-secret"
DATA_TYPE = "installed_applications"
RESULT_PREFIX = "BENCH-RESULT "


@dataclass
class Meter:
    """Wall time and process CPU (user + system, every thread) of the code between start() and stop()."""

    wall: float = 0.0
    cpu: float = 0.0
    _wall0: float = 0.0
    _cpu0: float = 0.0

    def start(self) -> Meter:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._cpu0 = usage.ru_utime + usage.ru_stime
        self._wall0 = time.perf_counter()
        return self

    def stop(self) -> Meter:
        self.wall = time.perf_counter() - self._wall0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu = usage.ru_utime + usage.ru_stime - self._cpu0
        return self


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports ru_maxrss in KB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / (1024 * 1024)


def current_rss_mb() -> float:
    """This process's resident set size now, in MB (from /proc; 0 where it is not available)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return 0.0
    return pages * resource.getpagesize() / (1024 * 1024)


def emit(result: dict[str, Any]) -> None:
    """Hand a worker's result to the orchestrator: one prefixed JSON line on stdout."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def parse_result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"the worker printed no result:\n{stdout[-2000:]}")


def refresh_token(sandbox_url: str) -> str:
    """What an admin gets from the Generate OAuth Token page, asked over the sandbox's control API."""
    import requests

    answer = requests.post(
        f"{sandbox_url}/sandbox/api/refresh_tokens",
        json={"username": "admin", "password": "admin", "client_id": CLIENT_ID},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["refresh_token"]
