"""Cost with more tenants (issue #15): a simulated Sunday of many tenants' weekly exports with real RQ workers, the
real scheduler on a compressed clock, PostgreSQL and one ServiceNow sandbox; wall time and CPU per record, and
whether the weekly window spreads the load as configured.

    .venv/bin/python -m benchmarks.sunday [--tenants 200] [--records 10000] [--workers 3] [--window-minutes 120]
                                          [--time-scale 30] [--json-out FILE] [--quick]

What runs, each in a process of its own: a redis-server, the sandbox (`python -m servicenow_sandbox --memory`, its
transforms instant so runs can be confirmed), and the workers as the README documents them
(`flask --app wsgi itam worker --no-scheduler`: RQ's forking worker, one work horse per export). This process is the
scheduler: it calls the product's `scheduler_pass(now)` (the reaper, lost-job recovery, then `scheduler_tick`) every
30 simulated seconds, as a worker's scheduler thread does every 30 real ones, on a clock that runs `--time-scale`
times faster than real time from just before the window opens. Exports themselves run at real speed: the scale
compresses only when runs become due, so a scale that makes the load denser than the machine serves shows up as
queue delay, not as faster exports.

A fresh PostgreSQL database per run (`ITAM_BENCH_POSTGRES_URL`, default the local server as user postgres) holds
every tenant's generated inventory (one computer per 20 installs; hardware and installed applications both exported)
and is dropped at the end, also on failure. Prints a short table; writes the figures as JSON to `--json-out`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import requests

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CLIENT_ID, CLIENT_SECRET, refresh_token
from demo_portal.embedded_redis import free_port, start_redis_server

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "ITAM_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
).replace("postgresql://", "postgresql+psycopg://", 1)
DATA_TYPES = ("hardware_inventory", "installed_applications")
INSTALLS_PER_COMPUTER = 20
FULL = {"tenants": 200, "records": 10_000, "workers": 3, "window_minutes": 120, "time_scale": 30.0}
# Quick: the 120-minute window passes in 12 real seconds; the whole run takes about half a minute.
QUICK = {"tenants": 6, "records": 500, "workers": 2, "window_minutes": 120, "time_scale": 600.0}
# A scheduler pass every simulated minute. A worker's scheduler thread ticks every 30 real seconds; on a clock 30x
# faster that would be a pass every real second, whose CPU (a pass reads every tenant's settings) competes with the
# exports themselves: the per-pass cost is reported so the product's own rate can be costed.
TICK_SIMULATED_SECONDS = 60.0
BUCKETS = 10  # the spread is judged per tenth of the window
SAMPLE_SECONDS = 0.2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FINISHED = ("succeeded", "partially_succeeded", "failed", "skipped")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- processes and their CPU ----------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from field 3 (state) on: the command name in parentheses may hold spaces."""
    with open(f"/proc/{pid}/stat") as handle:
        data = handle.read()
    return data[data.rindex(")") + 2 :].split()


def process_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process: its own (user + system, all threads) and its children's that it has waited for
    (RQ's worker waits for each work horse it forks, so their time lands here once the horse exited)."""
    fields = _stat_fields(pid)
    utime, stime, cutime, cstime = (int(value) / CLOCK_TICKS for value in fields[11:15])
    return {"own": utime + stime, "children": cutime + cstime}


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat_fields(int(entry))[1]) == pid:
                    found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _stop(process: subprocess.Popen, wait: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class FreshDatabase:
    """A new PostgreSQL database for one run, dropped on exit whatever happened."""

    def __init__(self, admin_url: str) -> None:
        import sqlalchemy as sa

        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.name = f"itam_sunday_{uuid.uuid4().hex[:10]}"
        self.url = admin_url.rsplit("/", 1)[0] + f"/{self.name}"

    def __enter__(self) -> FreshDatabase:
        import sqlalchemy as sa

        with self.admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        return self

    def __exit__(self, *exc_info: object) -> None:
        import sqlalchemy as sa

        try:
            with self.admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        finally:
            self.admin.dispose()


class Services:
    """A redis-server and the sandbox, each in a process of its own (as benchmarks.run starts them), the sandbox's
    transforms instant so the runs' read-back can confirm what they sent."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis: subprocess.Popen | None = None
        self.sandbox: subprocess.Popen | None = None
        self.redis_url = self.sandbox_url = ""

    def __enter__(self) -> Services:
        try:
            port = free_port()
            (self.workdir / "redis").mkdir(exist_ok=True)
            self.redis = start_redis_server(port, self.workdir / "redis")
            self.redis_url = f"redis://127.0.0.1:{port}/0"
            env = {**os.environ, "ITAM_SERVICENOW_CLIENT_ID": CLIENT_ID, "ITAM_SERVICENOW_CLIENT_SECRET": CLIENT_SECRET}
            self.sandbox = subprocess.Popen(
                [sys.executable, "-m", "servicenow_sandbox", "--port", "0", "--memory"]
                + ["--transform-seconds", "0", "--transform-jitter", "0"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=(self.workdir / "sandbox.log").open("wb"),
                text=True,
            )
            line = self.sandbox.stdout.readline() if self.sandbox.stdout else ""
            if "listening on" not in line:
                raise RuntimeError(f"the sandbox did not start: {line!r}; see {self.workdir / 'sandbox.log'}")
            self.sandbox_url = line.rsplit(" ", 1)[-1].strip()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for process in (self.sandbox, self.redis):
            if process is not None:
                _stop(process, 10)

    def state(self, wait_idle: float = 0) -> dict[str, Any]:
        params = {"wait_idle": wait_idle} if wait_idle else None
        answer = requests.get(f"{self.sandbox_url}/sandbox/api/state", params=params, timeout=wait_idle + 60)
        answer.raise_for_status()
        return answer.json()


class Workers:
    """`flask --app wsgi itam worker --no-scheduler` processes (this process is their scheduler)."""

    def __init__(self, count: int, env: dict[str, str], workdir: Path) -> None:
        self.processes: list[subprocess.Popen] = []
        self.logs = [workdir / f"worker-{n}.log" for n in range(1, count + 1)]
        command = [sys.executable, "-m", "flask", "--app", "wsgi", "itam", "worker", "--no-scheduler"]
        for path in self.logs:
            self.processes.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                    stdout=path.open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )

    def wait_listening(self, limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        for process, path in zip(self.processes, self.logs, strict=True):
            while "listening on" not in path.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"a worker did not start:\n{path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.1)

    def wait_idle(self, limit: float = 120.0) -> None:
        """Until no worker has a work horse left (each horse's CPU reaches its worker's children's time only once
        the worker has waited for it)."""
        deadline = time.monotonic() + limit
        while any(children_of(p.pid) for p in self.processes) and time.monotonic() < deadline:
            time.sleep(0.1)

    def cpu(self) -> dict[str, float]:
        totals = Counter()
        for process in self.processes:
            totals.update(process_cpu(process.pid))
        return {"own": totals["own"], "children": totals["children"]}

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            _stop(process)


class PostgresCpu:
    """CPU of the PostgreSQL server, two ways: the backends of our database, read from /proc every sample (each
    backend's last moments before it exits are missed: a lower bound), and the whole server (the postmaster, its
    children's exited time, and every live child; exact, but every database and other users of the server count)."""

    def __init__(self) -> None:
        self.backends: dict[tuple[int, str], float] = {}
        self.postmaster: int | None = None
        self.server_start: float | None = None

    def sample_backends(self, pids: list[int]) -> None:
        for pid in pids:
            try:
                fields = _stat_fields(pid)
            except OSError:
                continue
            if self.postmaster is None:
                self.postmaster = int(fields[1])
            key = (pid, fields[19])  # pid and start time: a pid may be reused
            self.backends[key] = max(self.backends.get(key, 0.0), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)

    def server_total(self) -> float | None:
        if self.postmaster is None:
            return None
        try:
            total = sum(process_cpu(self.postmaster).values())
            for child in children_of(self.postmaster):
                try:
                    total += process_cpu(child)["own"]
                except OSError:
                    continue
        except OSError:
            return None
        return total


class Sampler(threading.Thread):
    """Every SAMPLE_SECONDS: the RQ queue's length, runs by status, our database's backends' CPU. Uses connections
    of its own, whose backend is left out of the figures."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        super().__init__(name="sunday-sampler", daemon=True)
        import redis
        import sqlalchemy as sa

        from itam_admin.exports import job_queue

        self.engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.StaticPool)
        self.redis = redis.Redis.from_url(redis_url)
        self.queue_key = job_queue.queue(self.redis).key
        self.postgres = PostgresCpu()
        self.stopping = threading.Event()
        self.peak_queue_length = self.peak_queued = self.peak_running = 0
        self.finished = 0
        self.timeline: list[dict[str, float]] = []
        self.error: BaseException | None = None
        self._began = time.monotonic()
        self._last_point = -1.0

    def run(self) -> None:
        import sqlalchemy as sa

        backends = sa.text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        by_status = sa.text("SELECT status, count(*) FROM itam_export_run WHERE trigger = 'weekly' GROUP BY status")
        try:
            with self.engine.connect() as connection:
                while not self.stopping.is_set():
                    self.postgres.sample_backends(list(connection.scalars(backends)))
                    counts = dict(connection.execute(by_status).all())
                    length = self.redis.llen(self.queue_key)
                    queued, running = counts.get("queued", 0), counts.get("running", 0)
                    self.finished = sum(counts.get(status, 0) for status in FINISHED)
                    self.peak_queue_length = max(self.peak_queue_length, length)
                    self.peak_queued, self.peak_running = max(self.peak_queued, queued), max(self.peak_running, running)
                    elapsed = time.monotonic() - self._began
                    if elapsed - self._last_point >= 1.0:
                        self._last_point = elapsed
                        self.timeline.append(
                            {
                                "t": round(elapsed, 1),
                                "queue": length,
                                "queued": queued,
                                "running": running,
                                "finished": self.finished,
                            }
                        )
                    self.stopping.wait(SAMPLE_SECONDS)
        except BaseException as error:  # reported by the main loop, which would otherwise wait for ever
            self.error = error
        finally:
            self.engine.dispose()

    def stop(self) -> None:
        self.stopping.set()
        if self.ident is not None:  # started
            self.join(30)


# -- the portal app and the dataset ---------------------------------------------------------------------------------


def app_env(
    database_url: str, redis_url: str, encryption_key: str, window_minutes: int, read_back_wait: float | None
) -> dict[str, str]:
    env = {
        "ITAM_DEMO": "0",
        "SECRET_KEY": "benchmark-secret-key",
        "ITAM_ENCRYPTION_KEYS": encryption_key,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ITAM_SERVICENOW_CLIENT_ID": CLIENT_ID,
        "ITAM_SERVICENOW_CLIENT_SECRET": CLIENT_SECRET,
        "ITAM_SERVICENOW_ALLOW_INSECURE": "1",
        "ITAM_WEEKLY_EXPORT": "SUN 03:00",
        "ITAM_WEEKLY_WINDOW_MINUTES": str(window_minutes),
    }
    if read_back_wait is not None:
        env["ITAM_EXPORT_READ_BACK_WAIT_SECONDS"] = f"{read_back_wait:g}"
    return env


def make_app(env: dict[str, str], instance_path: str):
    from demo_portal import create_app

    app = create_app(env=env, instance_path=instance_path)
    with app.app_context():
        import itam_admin.models  # noqa: F401  (the whole schema)
    return app


def tenant_ids(count: int) -> list[str]:
    return [f"tenant-{number:03d}" for number in range(1, count + 1)]


def _generate_part(env: dict[str, str], instance_path: str, tenants: list[str], records: int) -> dict[str, float]:
    """One generating process's share of the tenants (COPY per tenant, as generate_inventory does on PostgreSQL)."""
    from demo_portal.demo_data import generate_inventory
    from itam_admin.db import db

    cpu = time.process_time()
    app = make_app(env, instance_path)
    created: Counter[str] = Counter()
    with app.app_context():
        for tenant in tenants:
            seed = int(tenant.rsplit("-", 1)[-1])
            computers = max(1, records // INSTALLS_PER_COMPUTER)
            created.update(generate_inventory(tenant, computers=computers, installs=records, contracts=0, seed=seed))
        db.engine.dispose()
    return {**created, "cpu_seconds": time.process_time() - cpu}


def _cheap_statistics(database_url: str) -> str:
    """The URL with sessions whose ANALYZE samples 300 rows, not 30,000: generate_inventory analyzes the inventory
    tables after each tenant (so an export's plans are right), which is most of its time when done 200 times;
    one full ANALYZE follows the last tenant instead."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url).update_query_dict({"options": "-c default_statistics_target=1"})
    return url.render_as_string(hide_password=False)


def generate(app, env: dict[str, str], instance_path: str, tenants: list[str], records: int) -> dict[str, Any]:
    """Every tenant's inventory, in two processes when there is enough of it (each with its own PostgreSQL
    backend, so both CPUs work), then fresh statistics of the inventory tables."""
    from itam_admin.db import db
    from itam_admin.inventory.models import TABLES_BY_DATA_TYPE

    processes = 2 if len(tenants) * records >= 100_000 and (os.cpu_count() or 1) >= 2 else 1
    cheap = {**env, "DATABASE_URL": _cheap_statistics(env["DATABASE_URL"])}
    started = time.perf_counter()
    if processes == 1:
        parts = [_generate_part(cheap, instance_path, tenants, records)]
    else:
        shares = [tenants[n::processes] for n in range(processes)]
        with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
            parts = list(
                pool.map(
                    _generate_part, [cheap] * processes, [instance_path] * processes, shares, [records] * processes
                )
            )
    with app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE " + ", ".join(table.name for table in TABLES_BY_DATA_TYPE.values()))
    wall = time.perf_counter() - started
    totals: Counter[str] = Counter()
    for part in parts:
        totals.update(part)
    rows = totals["hardware_inventory"] + totals["installed_applications"]
    return {
        "processes": processes,
        "seconds": round(wall, 2),
        "python_cpu_seconds": round(totals["cpu_seconds"], 2),
        "installed_applications": totals["installed_applications"],
        "hardware_inventory": totals["hardware_inventory"],
        "rows_per_second": round(rows / wall) if wall else 0,
    }


def save_tenant_settings(app, tenants: list[str], sandbox_url: str) -> float:
    """Each tenant's ServiceNow settings pointing at the sandbox, with a refresh token of its own."""
    from itam_admin.identity import Identity
    from itam_admin.settings.store import save_settings
    from itam_admin.settings.values import SettingsChange

    started = time.perf_counter()
    with app.app_context():
        for tenant in tenants:
            change = SettingsChange(
                instance_url=sandbox_url,
                username="admin",
                use_custom_credentials=False,
                export_data_types=DATA_TYPES,
                token=refresh_token(sandbox_url),
            )
            save_settings(tenant, change, Identity("1", "Bench", tenant, frozenset()))
    return time.perf_counter() - started


# -- the simulated Sunday -------------------------------------------------------------------------------------------


def window_opening(after: datetime, weekday: int, hour: int, minute: int) -> datetime:
    """The first weekly export time (e.g. Sunday 03:00) after `after`: the Sunday the simulation plays."""
    day = (after + timedelta(days=(weekday - after.weekday()) % 7)).replace(
        hour=hour, minute=minute, second=0, microsecond=0
    )
    return day if day > after else day + timedelta(days=7)


class Clock:
    """Simulated time running `scale` times faster than real time from `sim0`, with the real moment of any
    simulated one (and back)."""

    def __init__(self, sim0: datetime, scale: float) -> None:
        from itam_admin.db import utcnow

        self.sim0, self.scale = sim0, scale
        self.real0, self._mono0 = utcnow(), time.monotonic()

    def now(self) -> datetime:
        return self.sim0 + timedelta(seconds=(time.monotonic() - self._mono0) * self.scale)

    def real(self, simulated: datetime) -> datetime:
        return self.real0 + (simulated - self.sim0) / self.scale

    def simulated(self, real: datetime) -> datetime:
        return self.sim0 + (real - self.real0) * self.scale


def simulate(
    app, sampler: Sampler, tenants: int, window: timedelta, scale: float, tick_seconds: float, limit: float
) -> dict[str, Any]:
    """Drive the scheduler over the window on the simulated clock, then on until every tenant's run finished."""
    from itam_admin.db import db, utcnow
    from itam_admin.exports.scheduler_loop import scheduler_pass
    from itam_admin.plugin import current_plugin

    with app.app_context():
        weekly = current_plugin().config.weekly_export
    opening = window_opening(utcnow(), weekly.weekday, weekly.hour, weekly.minute)
    tick = timedelta(seconds=tick_seconds)
    clock = Clock(opening - tick, scale)
    deadline = time.monotonic() + limit
    next_tick, passes, lagged, pass_seconds, pass_cpu = clock.sim0, 0, 0, [], 0.0
    while True:
        now = clock.now()
        if now >= next_tick:
            wall, cpu = time.perf_counter(), time.thread_time()
            with app.app_context():
                try:
                    scheduler_pass(now)
                finally:
                    db.session.remove()
            pass_cpu += time.thread_time() - cpu
            pass_seconds.append(time.perf_counter() - wall)
            passes += 1
            next_tick += tick
            if next_tick <= clock.now():  # the pass took longer than a tick: the next one starts at once
                lagged += 1
                next_tick = clock.now()
        if sampler.error is not None:
            raise RuntimeError("the sampler stopped") from sampler.error
        if now >= opening + window and sampler.finished >= tenants:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sampler.finished} of {tenants} runs finished after {limit:.0f} s")
        time.sleep(max(0.0, min((next_tick - clock.now()).total_seconds() / scale, 0.05)))
    return {
        "clock": clock,
        "opening": opening,
        "scheduler": {
            "passes": passes,
            "passes_late": lagged,
            "tick_simulated_seconds": tick_seconds,
            "tick_real_seconds": tick_seconds / scale,
            "pass_seconds_mean": statistics.fmean(pass_seconds) if pass_seconds else 0.0,
            "pass_seconds_max": max(pass_seconds, default=0.0),
            "cpu_seconds": pass_cpu,
            "cpu_seconds_per_pass": pass_cpu / passes if passes else 0.0,
        },
    }


def collect(app) -> list[dict[str, Any]]:
    """Each tenant's weekly slot and run, as plain values."""
    from sqlalchemy import select

    from itam_admin.db import db
    from itam_admin.exports.models import ExportRun, WeeklySlot

    rows = []
    with app.app_context():
        runs = {run.id: run for run in db.session.scalars(select(ExportRun).where(ExportRun.trigger == "weekly"))}
        for slot in db.session.scalars(select(WeeklySlot).order_by(WeeklySlot.tenant_id)):
            run = runs.get(slot.run_id)
            types = {t.data_type: t for t in run.data_types} if run else {}
            rows.append(
                {
                    "tenant": slot.tenant_id,
                    "week": slot.week,
                    "due_at": slot.due_at,
                    "claimed_at": slot.claimed_at,
                    "outcome": slot.outcome,
                    "status": run.status if run else None,
                    "message": run.message if run else None,
                    "queued_at": run.queued_at if run else None,
                    "started_at": run.started_at if run else None,
                    "finished_at": run.finished_at if run else None,
                    "types": {
                        name: {
                            "total": t.total,
                            "sent": t.sent,
                            "failed": t.failed,
                            "confirmed": t.confirmed,
                            "unconfirmed": t.unconfirmed,
                        }
                        for name, t in types.items()
                    },
                }
            )
        db.session.remove()
    return rows


# -- figures --------------------------------------------------------------------------------------------------------


def chi_square_p(statistic: float, df: int) -> float:
    """P(X >= statistic) for a chi-square variable with `df` degrees of freedom (closed forms for whole df)."""
    if statistic <= 0:
        return 1.0
    half = statistic / 2
    if df % 2 == 0:
        term = total = 1.0
        for j in range(1, df // 2):
            term *= half / j
            total += term
        return min(1.0, math.exp(-half) * total)
    term = total = 0.0
    if df > 1:
        term = total = 1.0
        for j in range(2, (df - 1) // 2 + 1):
            term *= statistic / (2 * j - 1)
            total += term
    return min(1.0, math.erfc(math.sqrt(half)) + math.sqrt(2 * statistic / math.pi) * math.exp(-half) * total)


def spread(offsets: list[float], window_seconds: float, buckets: int = BUCKETS) -> dict[str, Any]:
    """How many of the offsets (seconds after the window opened) fall in each 1/buckets of the window, against an
    even spread: the counts, max/min, the largest deviation and a chi-square test of uniformity."""
    counts, outside = [0] * buckets, 0
    for offset in offsets:
        if 0 <= offset < window_seconds:
            counts[int(offset / window_seconds * buckets)] += 1
        else:
            outside += 1
    inside = sum(counts)
    expected = inside / buckets if inside else 0.0
    chi = sum((count - expected) ** 2 / expected for count in counts) if expected else 0.0
    deviation = max((abs(count - expected) for count in counts), default=0.0)
    return {
        "buckets": counts,
        "outside_window": outside,
        "expected_per_bucket": expected,
        "max": max(counts),
        "min": min(counts),
        "max_over_min": max(counts) / min(counts) if min(counts) else None,
        "max_deviation": deviation,
        "max_deviation_of_expected": deviation / expected if expected else None,
        "chi_square": chi,
        "chi_square_df": buckets - 1,
        "chi_square_p": chi_square_p(chi, buckets - 1),
    }


def _pattern(message: str | None) -> str:
    return re.sub(r"\d[\d,]*", "N", re.sub(r"https?://\S+", "URL", message or ""))


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"max": None, "median": None, "p95": None, "mean": None}
    ordered = sorted(values)
    return {
        "max": ordered[-1],
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
        "mean": statistics.fmean(ordered),
    }


def figures(rows: list[dict[str, Any]], clock: Clock, opening: datetime, window: timedelta) -> dict[str, Any]:
    """The Sunday's figures from the tenants' slots and runs (times of slots are simulated, of runs real)."""
    scale = clock.scale
    statuses = Counter(row["status"] or "no run" for row in rows)
    sent = Counter()
    confirmed = unconfirmed = failed = 0
    for row in rows:
        for name, counts in row["types"].items():
            sent[name] += counts["sent"]
            confirmed += counts["confirmed"]
            unconfirmed += counts["unconfirmed"]
            failed += counts["failed"]
    started = [row for row in rows if row["started_at"] is not None]
    finished = [row for row in rows if row["finished_at"] is not None]
    first_due = min(row["due_at"] for row in rows)
    first_due_real = clock.real(first_due)
    last_finished = max((row["finished_at"] for row in finished), default=None)
    start_delays = [_seconds(row["started_at"] - clock.real(row["due_at"])) for row in started]
    queue_waits = [_seconds(row["started_at"] - row["queued_at"]) for row in started]
    durations = [_seconds(row["finished_at"] - row["started_at"]) for row in finished if row["started_at"]]
    window_seconds = _seconds(window)
    wall = _seconds(last_finished - first_due_real) if last_finished else None
    return {
        "tenants": len(rows),
        "statuses": dict(statuses),
        # What runs that did not succeed said, with their numbers and the instance's address as N and URL.
        "messages": dict(Counter(_pattern(row["message"]) for row in rows if row["status"] != "succeeded")),
        "records_sent": sum(sent.values()),
        "records_sent_by_type": dict(sent),
        "records_confirmed": confirmed,
        "records_unconfirmed": unconfirmed,
        "records_failed": failed,
        "window_opens": opening.isoformat(),
        "first_due_simulated": first_due.isoformat(),
        "wall_seconds": wall,
        "records_per_second": sum(sent.values()) / wall if wall else None,
        "busy_seconds": _seconds(last_finished - min(r["started_at"] for r in started)) if last_finished else None,
        "window_real_seconds": window_seconds / scale,
        "run_seconds": _summary(durations),
        # From the moment the simulated clock reached the run's due time to its start (tick granularity included).
        "start_delay_real_seconds": _summary(start_delays),
        "start_delay_simulated_minutes": _summary([d * scale / 60 for d in start_delays]),
        "queue_wait_real_seconds": _summary(queue_waits),
        "due_spread": spread([_seconds(row["due_at"] - opening) for row in rows], window_seconds),
        # When runs actually started, on the simulated clock: shows whether the workers kept up with the spread.
        "start_spread": spread(
            [_seconds(clock.simulated(row["started_at"]) - opening) for row in started], window_seconds
        ),
    }


def table(report: dict[str, Any]) -> str:
    sunday, cpu, setup = report["sunday"], report["cpu"], report["setup"]
    due, starts = sunday["due_spread"], sunday["start_spread"]
    delay, wait = sunday["start_delay_real_seconds"], sunday["queue_wait_real_seconds"]
    durations = sunday["run_seconds"]
    scheduler = report["scheduler"]

    def per_100k(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        f"{report['tenants']} tenants x {report['records']:,} installs (+{report['records'] // 20:,} computers), "
        f"{report['workers']} workers, window {report['window_minutes']} min at x{report['time_scale']:g} "
        f"({sunday['window_real_seconds']:.0f} s real)",
        f"  generate inventory          {setup['generate']['seconds']:>10.1f} s "
        f"({setup['generate']['rows_per_second']:,} rows/s, {setup['generate']['processes']} processes)",
        f"  wall, first due -> last end {sunday['wall_seconds']:>10.1f} s ({sunday['records_per_second']:,.0f} rec/s)",
        f"  records sent                {sunday['records_sent']:>10,} "
        f"({', '.join(f'{k} {v:,}' for k, v in sunday['records_sent_by_type'].items())})",
        f"  runs                        {', '.join(f'{k} {v}' for k, v in sorted(sunday['statuses'].items()))}",
        f"  run seconds mean / max      {durations['mean'] or 0:>10.2f} / {durations['max'] or 0:.2f}",
        f"  worker CPU s (per 100k)     {cpu['workers_seconds']:>10.1f} ({per_100k(cpu['workers_per_100k'])})",
        f"  PostgreSQL CPU s (per 100k) {cpu['postgres_backends_seconds']:>10.1f} "
        f"({per_100k(cpu['postgres_backends_per_100k'])}); whole server {cpu['postgres_server_seconds'] or 0:.1f}",
        f"  sandbox CPU s (per 100k)    {cpu['sandbox_seconds']:>10.1f} ({per_100k(cpu['sandbox_per_100k'])})",
        f"  product CPU per 100k        {per_100k(cpu['product_per_100k']):>10} (workers + PostgreSQL backends)",
        f"  scheduler CPU s             {cpu['scheduler_seconds']:>10.1f} "
        f"({scheduler['passes']} passes, {scheduler['cpu_seconds_per_pass'] * 1000:.0f} ms CPU each)",
        f"  peak queue (RQ / queued)    {report['peak']['queue_length']:>10} / {report['peak']['queued_runs']}",
        f"  start delay real s max/p95  {delay['max'] or 0:>10.1f} / {delay['p95'] or 0:.1f} "
        f"(= {sunday['start_delay_simulated_minutes']['max'] or 0:.1f} simulated min max); "
        f"queue wait max {wait['max'] or 0:.1f} s",
        f"  due per tenth of window     {due['buckets']} expected {due['expected_per_bucket']:g}, "
        f"max/min {due['max']}/{due['min']}, chi2 {due['chi_square']:.1f} (df {due['chi_square_df']}, "
        f"p {due['chi_square_p']:.2f})",
        f"  started per tenth           {starts['buckets']} + {starts['outside_window']} after the window",
    ]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from cryptography.fernet import Fernet

    from itam_admin.db import db

    tenants = tenant_ids(args.tenants)
    window = timedelta(minutes=args.window_minutes)
    started = time.monotonic()
    with FreshDatabase(POSTGRES_ADMIN_URL) as database, Services(workdir) as services:
        env = app_env(
            database.url, services.redis_url, Fernet.generate_key().decode(), args.window_minutes, args.read_back_wait
        )
        instance = str(workdir / "instance")
        app = make_app(env, instance)
        with app.app_context():
            db.create_all()
            db.engine.dispose()
        log(f"generating {len(tenants)} tenants x {args.records:,} installs ...")
        generation = generate(app, env, instance, tenants, args.records)
        log(f"generated in {generation['seconds']:.1f} s; saving settings ...")
        settings_seconds = save_tenant_settings(app, tenants, services.sandbox_url)
        workers = Workers(args.workers, {**env, "ITAM_INSTANCE_PATH": instance}, workdir)
        sampler = None
        try:
            workers.wait_listening()
            sampler = Sampler(database.url, services.redis_url)
            sampler.start()
            while sampler.postgres.postmaster is None and sampler.error is None:
                time.sleep(0.05)  # the postmaster is found from the first sample's backends
            workers_before = workers.cpu()
            sandbox_before = process_cpu(services.sandbox.pid)
            server_before = sampler.postgres.server_total()
            backends_before = sum(sampler.postgres.backends.values())
            limit = args.window_minutes * 60 / args.time_scale + args.timeout
            log(f"the Sunday: {args.window_minutes} min window in {args.window_minutes * 60 / args.time_scale:.0f} s")
            played = simulate(app, sampler, len(tenants), window, args.time_scale, args.tick_seconds, limit)
            workers.wait_idle()
            workers_after = workers.cpu()
            sandbox_state = services.state(wait_idle=60)
            sandbox_after = process_cpu(services.sandbox.pid)
            time.sleep(2 * SAMPLE_SECONDS)
            server_after = sampler.postgres.server_total()
            sampler.stop()
        finally:
            try:
                workers.stop()
            finally:
                if sampler is not None:
                    sampler.stop()
        rows = collect(app)
        with app.app_context():
            db.engine.dispose()
    sunday = figures(rows, played["clock"], played["opening"], window)
    records = sunday["records_sent"] or 0

    def per_100k(seconds: float | None) -> float | None:
        return seconds / records * 100_000 if records and seconds is not None else None

    worker_seconds = sum(workers_after.values()) - sum(workers_before.values())
    sandbox_seconds = sum(sandbox_after.values()) - sum(sandbox_before.values())
    backend_seconds = sum(sampler.postgres.backends.values()) - backends_before
    server_seconds = server_after - server_before if None not in (server_after, server_before) else None
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "tenants": args.tenants,
        "records": args.records,
        "workers": args.workers,
        "window_minutes": args.window_minutes,
        "time_scale": args.time_scale,
        "read_back_wait_seconds": args.read_back_wait,
        "data_types": list(DATA_TYPES),
        "elapsed_seconds": round(time.monotonic() - started, 1),
        "setup": {"generate": generation, "settings_seconds": round(settings_seconds, 2)},
        "sunday": sunday,
        "scheduler": played["scheduler"],
        "cpu": {
            "workers_seconds": worker_seconds,
            "workers_own_seconds": workers_after["own"] - workers_before["own"],
            "workers_horses_seconds": workers_after["children"] - workers_before["children"],
            "workers_per_100k": per_100k(worker_seconds),
            "postgres_backends_seconds": backend_seconds,
            "postgres_backends_per_100k": per_100k(backend_seconds),
            "postgres_server_seconds": server_seconds,
            # The product's own cost: the workers and their export's database work.
            "product_per_100k": per_100k(worker_seconds + backend_seconds),
            "sandbox_seconds": sandbox_seconds,
            "sandbox_per_100k": per_100k(sandbox_seconds),
            "scheduler_seconds": played["scheduler"]["cpu_seconds"],
        },
        "peak": {
            "queue_length": sampler.peak_queue_length,
            "queued_runs": sampler.peak_queued,
            "running_runs": sampler.peak_running,
        },
        "sandbox": {
            "records_received": sum(sandbox_state["records_received"].values()),
            "api_requests": sandbox_state["requests"].get("api", 0),
            "transform_ms": sandbox_state["transform_ms_total"],
        },
        "timeline": sampler.timeline,
        "tenant_runs": [
            {
                **row,
                **{
                    key: row[key].isoformat() if row[key] else None
                    for key in ("due_at", "claimed_at", "queued_at", "started_at", "finished_at")
                },
            }
            for row in rows
        ],
        "load_average_1m": os.getloadavg()[0],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sunday", description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, help=f"[default {FULL['tenants']}; quick {QUICK['tenants']}]")
    parser.add_argument("--records", type=int, help=f"installs per tenant [default {FULL['records']:,}]")
    parser.add_argument("--workers", type=int, help=f"worker processes [default {FULL['workers']}]")
    parser.add_argument("--window-minutes", type=int, help="ITAM_WEEKLY_WINDOW_MINUTES [default 120]")
    parser.add_argument("--time-scale", type=float, help="simulated seconds per real second [default 30; quick 600]")
    parser.add_argument(
        "--read-back-wait",
        type=float,
        help="ITAM_EXPORT_READ_BACK_WAIT_SECONDS [default: the product's, 14 s; 0 leaves runs 'not confirmed yet']",
    )
    parser.add_argument(
        "--tick-seconds",
        type=float,
        default=TICK_SIMULATED_SECONDS,
        help=f"simulated seconds between scheduler passes [{TICK_SIMULATED_SECONDS:g}]",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed after the window [1800]")
    parser.add_argument("--json-out", type=Path, default=ROOT / "benchmarks" / "results" / "sunday.json")
    parser.add_argument("--workdir", type=Path, help="keep logs there [default: a temporary folder, removed]")
    parser.add_argument("--quick", action="store_true", help="6 tenants x 500 records, 2 workers, ~30 s")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if (
        min(args.tenants, args.records, args.workers, args.window_minutes) < 1
        or min(args.time_scale, args.tick_seconds) <= 0
    ):
        parser.error("tenants, records, workers and window minutes must be at least 1, time scale and tick above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C: the workers, Redis and the sandbox stop and the database is dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="itam-sunday-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"\nresults: {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
