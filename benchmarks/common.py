"""Small helpers shared by the benchmark's orchestrator and its worker processes (stdlib only, so a worker that
imports this module pays nothing for it in memory)."""

from __future__ import annotations

import hashlib
import json
import resource
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TENANT = "bench"
CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-client-secret"
DATA_TYPE = "installed_applications"
STAGING_TABLE = "u_itam_installed_applications"
SANDBOX_USER = ("admin", "admin")  # the sandbox's admin account: what the peers log in with (basic auth)
BATCH_SIZE = 200
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
    """This process's peak resident set size so far, in MB: VmHWM from /proc (the high-water mark of this program's
    own memory). Not ru_maxrss: Linux keeps that across execve, so a worker forked from a big orchestrator would
    report the orchestrator's size. Falls back to ru_maxrss where /proc is not there."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
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


def libpq_url(database_url: str) -> str:
    """A SQLAlchemy PostgreSQL URL (postgresql+psycopg://...) as libpq takes it (postgresql://...)."""
    scheme, separator, rest = database_url.partition("://")
    if not separator or not scheme.startswith("postgresql"):
        raise ValueError(f"not a PostgreSQL URL: {database_url!r}")
    return f"postgresql://{rest}"


def sqlite_path(database_url: str) -> str:
    """The file of a sqlite:///PATH URL."""
    if not database_url.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite file URL: {database_url!r}")
    return database_url[len("sqlite:///") :]


def database_kind(database_url: str) -> str:
    """The kind of database a SQLAlchemy URL names: "sqlite" or "postgresql"."""
    return "postgresql" if database_url.startswith("postgresql") else "sqlite"


class RecordsDigest:
    """A digest of records, text "<count>:<hex>", the same for the same records whatever their order or key order,
    so that processes that map rows each their own way can show they produced the same records (a sum of per-record
    digests, mod 2**64)."""

    def __init__(self) -> None:
        self.count = 0
        self._total = 0

    def add(self, record: dict[str, str]) -> None:
        canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        digest = int.from_bytes(hashlib.blake2b(canonical, digest_size=8).digest(), "big")
        self._total = (self._total + digest) % (1 << 64)
        self.count += 1

    def text(self) -> str:
        return f"{self.count}:{self._total:016x}"


def records_digest(records: Iterable[dict[str, str]]) -> str:
    """The RecordsDigest text of these records."""
    digest = RecordsDigest()
    for record in records:
        digest.add(record)
    return digest.text()
