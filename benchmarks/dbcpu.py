"""The PostgreSQL server's CPU spent for one step: the user + system CPU of every client backend connected to the
benchmark's database, read from /proc/<pid>/stat before and after the timed part.

Why this way: the exporter talks to PostgreSQL through a connection pool (and may use several connections), so
asking each of its connections for ``pg_backend_pid()`` would mean reaching into the pool; every benchmark database
is fresh and private to one run, so "every backend of this database" is the same set. The sampler's own connection is
left out.

Best effort, and the result says how it went (``db_backends``):

* a backend that appears during the step is counted from zero (a forked backend's CPU counters start at zero);
* a backend that disconnects during the step takes its CPU with it (``lost`` > 0): the workers keep their
  connections open until after the second sample, so this should not happen;
* the server's shared processes (WAL writer, checkpointer, background writer, autovacuum) are not counted;
* the database must run on this machine, in this PID namespace: when a backend's /proc entry is missing or is not a
  postgres process, ``db_cpu_seconds`` is None and ``db_cpu_note`` says why.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.common import libpq_url

BACKENDS_SQL = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' "
    "AND pid <> pg_backend_pid()"
)


def process_cpu_seconds(pid: int, ticks_per_second: float) -> float | None:
    """utime + stime of a postgres process, in seconds; None when /proc has no such postgres process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    if not name.startswith("postgres"):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    # After "pid (comm)": state is field 3 of proc(5); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / ticks_per_second


class BackendCpu:
    """``start()`` before the timed part, ``stop()`` after it (while the measured process still holds its
    connections), then ``close()``."""

    def __init__(self, database_url: str) -> None:
        import psycopg

        self._connection = psycopg.connect(libpq_url(database_url), autocommit=True)
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._before: dict[int, float | None] = {}

    def _sample(self) -> dict[int, float | None]:
        pids = [row[0] for row in self._connection.execute(BACKENDS_SQL).fetchall()]
        return {pid: process_cpu_seconds(pid, self._ticks) for pid in pids}

    def start(self) -> BackendCpu:
        self._before = self._sample()
        return self

    def stop(self) -> dict[str, Any]:
        """The database server's CPU seconds since start(), with how many backends were seen."""
        after = self._sample()
        before = self._before
        backends = {
            "before": len(before),
            "after": len(after),
            "new": sum(1 for pid in after if pid not in before),
            "lost": sum(1 for pid in before if pid not in after),
        }
        unreadable = [pid for pid, cpu in after.items() if cpu is None or (pid in before and before[pid] is None)]
        if unreadable:
            return {
                "db_cpu_seconds": None,
                "db_cpu_note": f"no postgres process in /proc for backend(s) {unreadable[:3]}: not on this machine?",
                "db_backends": backends,
            }
        seconds = sum((cpu or 0.0) - (before.get(pid) or 0.0) for pid, cpu in after.items())
        note = "" if not backends["lost"] else f"{backends['lost']} backend(s) disconnected mid-step: CPU undercounted"
        return {"db_cpu_seconds": seconds, "db_cpu_note": note, "db_backends": backends}

    def close(self) -> None:
        self._connection.close()


def not_measured(database_url: str) -> dict[str, Any]:
    """What a step reports when there is no separate database server to measure (SQLite runs in-process: its CPU is
    already in the process's own figure) or no database at all."""
    note = "SQLite runs in the process: its CPU is in cpu_seconds" if database_url.startswith("sqlite") else ""
    return {"db_cpu_seconds": 0.0, "db_cpu_note": note or "no database", "db_backends": None}


def sampler(database_url: str) -> BackendCpu | None:
    """A BackendCpu on PostgreSQL, None elsewhere."""
    return BackendCpu(database_url) if database_url.startswith("postgresql") else None
