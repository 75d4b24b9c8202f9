"""The exporter benchmark (SPEC section 10, Performance). In one run, on SQLite and on PostgreSQL, against sandboxes
in processes of their own, it measures at each size, every step in a fresh process:

* the exporter (``export_run``, a full export of one tenant's installed applications): records/s, CPU seconds per
  100,000 records, peak RSS and, on PostgreSQL, the database server's CPU;
* a bare client posting the same mapped records, pre-built as JSON batches of 200, 4 requests in flight;
* two peers on the same records and sandbox: the straightforward script an admin would write
  (``benchmarks.peer_script``) and ServiceNow's own client pysnc, one insert per record on a capped sample
  (``benchmarks.peer_pysnc``, against a second sandbox serving https since pysnc refuses http);
* with the sandbox adding ``--latency-ms`` to every request (at ``--latency-sizes``), the exporter and the bare
  client against the bound batch size x requests in flight / latency;
* the differential export after 1% of the installs change.

    .venv/bin/python -m benchmarks.run [--sizes 10000,100000] [--databases sqlite,postgresql] [--quick]
        [--peer-sample 5000] [--latency-ms 100] [--latency-sizes N,...] [--profile] [--sunday] [--adaptive] [--publish]

Prints a table, the exporter's ratios to the bare client and the peers, and the targets (PASS/MISS per database and
size); writes OUT/results.json and OUT/chart.png (and with --publish benchmarks/results/latest.json and
benchmarks/results/benchmark.png, the two files of benchmarks/results/ that git tracks).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import dataset
from benchmarks.common import BATCH_SIZE, CLIENT_ID, CLIENT_SECRET, libpq_url, parse_result
from benchmarks.portal_app import REQUESTS_IN_FLIGHT
from demo_portal.embedded_redis import free_port, start_redis_server

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "benchmarks" / "results"  # latest.json and benchmark.png there are tracked; the rest is ignored
IN_FLIGHT = REQUESTS_IN_FLIGHT
QUICK_SIZE = 2_000
QUICK_PEER_SAMPLE = 200
DEFAULT_SIZES = (10_000, 100_000)
DEFAULT_PEER_SAMPLE = 5_000
DATABASES = ("sqlite", "postgresql")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TARGET_SIZES = (100_000, 1_000_000)
TARGETS = {
    "cpu_vs_bare": 2.0,
    "throughput_vs_bare": 0.7,
    "throughput_vs_bound": 0.9,
    "memory_growth_mb": 30.0,
    "differential_sent_pct": 1.05,
    "differential_time_pct": 5.0,
}
PEERS = ("script", "pysnc")
WHO = {
    "exporter": "exporter",
    "bare": "bare client",
    "script": "script",
    "pysnc": "pysnc",
    "differential": "differential",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def postgres_admin_url() -> str:
    return os.environ.get("ITAM_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)


# -- the services -------------------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    """A sandbox process (``python -m servicenow_sandbox --memory``), over http or https, and its control API."""

    name: str
    url: str = ""
    ca: str | None = None  # with https: the sandbox's self-signed certificate, to trust
    process: subprocess.Popen | None = None

    @classmethod
    def start(cls, workdir: Path, name: str, tls: bool = False) -> Sandbox:
        env = {**os.environ, "ITAM_SERVICENOW_CLIENT_ID": CLIENT_ID, "ITAM_SERVICENOW_CLIENT_SECRET": CLIENT_SECRET}
        certificates = workdir / f"{name}-tmp"
        if tls:
            # The sandbox writes its throwaway certificate into a temporary folder: one of ours, to find it in.
            certificates.mkdir(parents=True, exist_ok=True)
            env["TMPDIR"] = str(certificates)
        log_file = (workdir / f"{name}.log").open("wb")
        command = [sys.executable, "-m", "servicenow_sandbox", "--port", "0", "--memory", *(["--tls"] if tls else [])]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log_file, text=True)
        sandbox = cls(name, process=process)
        line = process.stdout.readline() if process.stdout else ""
        if "listening on" not in line:
            sandbox.stop()
            raise RuntimeError(f"the {name} sandbox did not start: {line!r}; see {workdir / f'{name}.log'}")
        sandbox.url = line.rsplit(" ", 1)[-1].strip()
        if tls:
            found = sorted(certificates.glob("*/cert.pem"))
            if not found:
                sandbox.stop()
                raise RuntimeError(f"the {name} sandbox serves https but left no cert.pem under {certificates}")
            sandbox.ca = str(found[0])
        return sandbox

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def _verify(self) -> str | bool:
        return self.ca or True

    def reset(self, latency_ms: float = 0.0, computers: list[dict[str, str]] | None = None) -> None:
        """Forget imported records and faults, put back the computers the installs are to find (as if the hardware
        inventory had been exported before), then set the latency for the next step."""
        self.wait_idle()
        answer = requests.post(f"{self.url}/sandbox/api/reset", json={}, timeout=120, verify=self._verify())
        answer.raise_for_status()
        for start in range(0, len(computers or ()), 5_000):
            chunk = {"table": "cmdb_ci_computer", "records": computers[start : start + 5_000]}  # type: ignore[index]
            answer = requests.post(f"{self.url}/sandbox/api/records", json=chunk, timeout=300, verify=self._verify())
            answer.raise_for_status()
        answer = requests.post(
            f"{self.url}/sandbox/api/faults", json={"latency_ms": latency_ms}, timeout=30, verify=self._verify()
        )
        answer.raise_for_status()

    def hold_transforms(self, hold: bool) -> None:
        """Stop (True) or resume transforming. A real instance transforms on its own nodes; this sandbox would do it
        on the cores the client under test runs on, so it holds them while a step sends (for every step alike)."""
        answer = requests.post(
            f"{self.url}/sandbox/api/faults", json={"hold_transforms": hold}, timeout=30, verify=self._verify()
        )
        answer.raise_for_status()

    def state(self) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/sandbox/api/state", timeout=60, verify=self._verify())
        answer.raise_for_status()
        return answer.json()

    def wait_idle(self, limit: float = 1800.0) -> dict[str, Any]:
        """Wait for the sandbox's transform worker to finish, so one step's work never overlaps the next."""
        deadline = time.monotonic() + limit
        while True:
            answer = requests.get(
                f"{self.url}/sandbox/api/state", params={"wait_idle": 60}, timeout=90, verify=self._verify()
            )
            answer.raise_for_status()
            state = answer.json()
            if state.get("idle") or time.monotonic() > deadline:
                return state


@dataclass
class Services:
    """A redis-server, the sandbox (http) and a second sandbox serving https (for pysnc), each in a process of its
    own, so their CPU is not counted as the exporter's."""

    workdir: Path
    redis_url: str = ""
    sandbox: Sandbox | None = None
    secure: Sandbox | None = None
    _redis: subprocess.Popen | None = field(default=None, repr=False)

    def __enter__(self) -> Services:
        try:
            port = free_port()
            redis_dir = self.workdir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            self._redis = start_redis_server(port, redis_dir)
            self.redis_url = f"redis://127.0.0.1:{port}/0"
            self.sandbox = Sandbox.start(self.workdir, "sandbox")
            self.secure = Sandbox.start(self.workdir, "sandbox-https", tls=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sandbox in (self.secure, self.sandbox):
            if sandbox is not None:
                sandbox.stop()
        if self._redis is not None:
            self._redis.terminate()
            try:
                self._redis.wait(10)
            except subprocess.TimeoutExpired:
                self._redis.kill()
            self._redis = None


class PostgresDatabases:
    """Fresh PostgreSQL databases, one per dataset: created before it is prepared, dropped when its size is done."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(libpq_url(self.admin_url), autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql)

    def check(self) -> None:
        try:
            self._execute("SELECT 1")
        except Exception as error:
            raise SystemExit(
                f"PostgreSQL is not reachable at {self.admin_url} ({error}); set ITAM_BENCH_POSTGRES_URL or pass "
                "--databases sqlite"
            ) from None

    def create(self, size: int) -> tuple[str, str]:
        """(name, SQLAlchemy URL) of a new, empty database."""
        name = f"itam_bench_{os.getpid()}_{size}_{secrets.token_hex(3)}"
        self._execute(f'CREATE DATABASE "{name}"')
        return name, f"{self.admin_url.rsplit('/', 1)[0]}/{name}"

    def copy(self, name: str, label: str) -> tuple[str, str]:
        """(name, SQLAlchemy URL) of a new database copied from `name` (nobody may be connected to it)."""
        copy = f"{name}_{label}"
        self._execute(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
        return copy, f"{self.admin_url.rsplit('/', 1)[0]}/{copy}"

    def drop(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- running and measuring steps ----------------------------------------------------------------------------------


def run_worker(module: str, *args: str, timeout: float = 7200, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a benchmark step in a fresh Python process and return the result it printed."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{module} failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    return parse_result(completed.stdout)


def sandbox_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the sandbox saw between two state snapshots: API requests, records, and its own time per request."""
    api = after["requests"].get("api", 0) - before["requests"].get("api", 0)
    api_ms = after["api_handling_ms_total"] - before["api_handling_ms_total"]
    received = sum(after["records_received"].values()) - sum(before["records_received"].values())
    return {
        "api_requests": api,
        "records_received": received,
        "handling_ms_per_request": api_ms / api if api else 0.0,
        "transform_ms": after["transform_ms_total"] - before["transform_ms_total"],
    }


def per_100k(seconds: float | None, records: int) -> float | None:
    return None if seconds is None else (seconds / records * 100_000 if records else 0.0)


def figures(result: dict[str, Any], records: int) -> dict[str, Any]:
    """Add records/s, CPU per 100k records (the process's, the database server's, both) to a worker's result."""
    sent = result["sent"] or 0
    wall = result["wall_seconds"]
    result.setdefault("db_cpu_seconds", 0.0)
    result.setdefault("db_cpu_note", "no database")
    result["records_per_second"] = sent / wall if wall else 0.0
    result["cpu_seconds_per_100k"] = per_100k(result["cpu_seconds"], sent)
    result["db_cpu_seconds_per_100k"] = per_100k(result["db_cpu_seconds"], sent)
    db_cpu = result["db_cpu_seconds"]  # None: not measurable (see benchmarks.dbcpu), so neither is the sum
    result["cpu_seconds_per_100k_with_db"] = None if db_cpu is None else per_100k(result["cpu_seconds"] + db_cpu, sent)
    result["records"] = records
    return result


def measured(
    sandbox: Sandbox,
    module: str,
    args: list[str],
    records: int,
    computers: list[dict[str, str]],
    latency_ms: float = 0.0,
    env: dict[str, str] | None = None,
    reset: bool = True,
) -> dict[str, Any]:
    """One pass against a freshly reset sandbox holding the dataset's computers (or, `reset` False, the sandbox as
    the last step left it), with the sandbox's view of it. Transforms are held while the step runs and done after
    it, outside the timed part."""
    if reset:
        sandbox.reset(latency_ms, computers)
    before = sandbox.state()
    sandbox.hold_transforms(True)
    try:
        result = figures(run_worker(module, *args, env=env), records)
    finally:
        sandbox.hold_transforms(False)
    after = sandbox.wait_idle()
    result["sandbox"] = sandbox_delta(before, after)
    result["latency_ms"] = latency_ms
    result["load_average_1m"] = os.getloadavg()[0]  # other work on the machine skews wall times, not CPU seconds
    return result


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def ratios(entry: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """The exporter against the bare client and each peer: throughput (higher is better for the exporter), CPU per
    record of the process (lower is better), and CPU per record with the database server's included."""
    exporter = entry["exporter"]
    others = {"bare": entry["bare"], **entry["peers"]}
    return {
        who: {
            "throughput": ratio(exporter["records_per_second"], other["records_per_second"]),
            "cpu_per_record": ratio(exporter["cpu_seconds_per_100k"], other["cpu_seconds_per_100k"]),
            "cpu_per_record_with_db": ratio(
                exporter["cpu_seconds_per_100k_with_db"], other["cpu_seconds_per_100k_with_db"]
            ),
        }
        for who, other in others.items()
    }


@dataclass
class Options:
    latency_ms: float
    latency_sizes: set[int]
    peer_sample: int
    profile_size: int | None
    out: Path
    pairs: int = 1


def pair_ratios(exporter: dict[str, Any], bare: dict[str, Any]) -> dict[str, float | None]:
    """The exporter's ratios to the bare client measured right after it (one pair of the 0 ms steps), and the API
    requests the exporter made (the same in every pair: each starts from the database as prepared)."""
    return {
        "cpu_per_record": ratio(exporter["cpu_seconds_per_100k"], bare["cpu_seconds_per_100k"]),
        "throughput": ratio(exporter["records_per_second"], bare["records_per_second"]),
        "load_average_1m": exporter["load_average_1m"],
        "exporter_api_requests": exporter["sandbox"]["api_requests"],
    }


def median_pair(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pair (exporter, bare client) whose CPU-per-record ratio is the median of the pairs' (the upper one of an
    even number): the figures of both come from the same minutes of the machine, which a shared machine's speed can
    change by 2 x within an hour."""
    ranked = sorted(pairs, key=lambda pair: pair_ratios(*pair)["cpu_per_record"] or 0.0)
    return ranked[len(ranked) // 2]


def benchmark_size(
    services: Services,
    workdir: Path,
    database: str,
    database_url: str,
    size: int,
    options: Options,
    copy_database: Callable[[str], str],
) -> dict[str, Any]:
    """Every step at one size on one database (whose database_url is empty, and is left for the caller to drop);
    `copy_database(label)` copies it as prepared and returns the copy's URL. The first exporter step runs on the
    prepared database itself; every later one that exports in full (latency, profile, differential) on a copy made
    before any export, so that each starts as the first did: without the import sets an earlier step left awaiting
    confirmation, which a reset sandbox has forgotten (the exporter would read them back, before and after sending,
    in vain: at 1,000,000 records 200 reads more, about half of what it lagged the bare client by at 100 ms)."""
    assert services.sandbox is not None and services.secure is not None
    sandbox, secure = services.sandbox, services.secure
    tag = f"[{database} {size:,}]"
    directory = workdir / f"{database}-n{size}"
    sample = min(size, options.peer_sample)
    log(f"{tag} generating {size:,} installed applications ...")
    prepared = run_worker(
        "benchmarks.dataset",
        "prepare",
        *("--dir", str(directory), "--records", str(size), "--database-url", database_url),
        *("--sandbox-url", sandbox.url, "--redis-url", services.redis_url, "--peer-sample", str(sample)),
    )
    records = prepared["records"]
    config = prepared["config"]

    def fresh_config(label: str) -> str:
        return str(dataset.copy_config(directory, copy_database(label), label))

    # The first pair's exporter exports the prepared database itself; each later pair's a copy of it as prepared.
    pair_configs = [config] + [fresh_config(f"pair{number}") for number in range(2, options.pairs + 1)]
    differential_config = fresh_config("differential")
    latency_config = fresh_config("latency") if size in options.latency_sizes else None
    profile_config = fresh_config("profile") if options.profile_size == size else None
    computers = json.loads(Path(prepared["computers_file"]).read_text())
    batches = str(directory / "batches.jsonl")
    bare_args = ["--batches", batches, "--sandbox-url", sandbox.url, "--in-flight", str(IN_FLIGHT)]
    log(f"{tag} generated in {prepared['generate_seconds']:.1f}s; full export ...")
    pairs = []
    for pair_config in pair_configs:
        exporter = measured(
            sandbox, "benchmarks.exporter_worker", ["--config", pair_config, "--full"], records, computers
        )
        log(f"{tag} exporter {exporter['records_per_second']:,.0f} rec/s; bare client ...")
        bare = measured(sandbox, "benchmarks.baseline_worker", bare_args, records, computers)
        pairs.append((exporter, bare))
    exporter, bare = median_pair(pairs)
    log(f"{tag} bare client {bare['records_per_second']:,.0f} rec/s; the script peer ...")
    peer_args = ["--database-url", database_url]
    script_args = [*peer_args, "--sandbox-url", sandbox.url]
    script = measured(sandbox, "benchmarks.peer_script", script_args, records, computers)
    log(f"{tag} script {script['records_per_second']:,.0f} rec/s; pysnc on {sample:,} records ...")
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the certificate pysnc is told to trust.
    pysnc_env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    pysnc_args = [*peer_args, "--sandbox-url", secure.url, "--ca", secure.ca or "", "--sample", str(sample)]
    pysnc = measured(secure, "benchmarks.peer_pysnc", pysnc_args, sample, computers, env=pysnc_env)
    log(f"{tag} pysnc {pysnc['records_per_second']:,.0f} rec/s ({pysnc['api']} API)")
    entry: dict[str, Any] = {
        "records": records,
        "database": database,
        "prepare": prepared,
        "exporter": exporter,
        "bare": bare,
        "peers": {"script": script, "pysnc": pysnc},
        "pairs": [pair_ratios(*pair) for pair in pairs],
    }
    entry["ratios"] = ratios(entry)
    if latency_config is not None:
        log(f"{tag} with {options.latency_ms:g} ms added per request ...")
        latency_args = ["--config", latency_config, "--full"]
        entry["latency"] = {
            "latency_ms": options.latency_ms,
            "bound_records_per_second": bound(options.latency_ms),
            "exporter": measured(
                sandbox, "benchmarks.exporter_worker", latency_args, records, computers, options.latency_ms
            ),
            "bare": measured(sandbox, "benchmarks.baseline_worker", bare_args, records, computers, options.latency_ms),
        }
    if profile_config is not None:
        log(f"{tag} profiling a full export ...")
        profile = options.out / f"profile-{database}-{size}.pstats"
        profile_args = ["--config", profile_config, "--full", "--profile", str(profile)]
        measured(sandbox, "benchmarks.exporter_worker", profile_args, records, computers)
    log(f"{tag} a confirmed full export of the copy, then 1% changed and the difference exported ...")
    entry["differential"] = differential_step(sandbox, directory, differential_config, records, computers)
    return entry


def differential_step(
    sandbox: Sandbox, directory: Path, config: str, records: int, computers: list[dict[str, str]]
) -> dict[str, Any]:
    """The weekly case, on the dataset's copy (its database as prepared): a full export whose read-back waits until
    ServiceNow's transforms confirm every record (as last week's export would have), 1% of the installs changed, then
    a differential export, timed, against the sandbox as the full export left it."""
    sandbox.reset(0.0, computers)
    settled = figures(
        run_worker("benchmarks.exporter_worker", "--config", config, "--full", "--read-back-wait", "1800"), records
    )
    mutation = run_worker("benchmarks.dataset", "mutate", "--config", config, "--change-fraction", "0.01")
    export = ["--config", config]
    differential = measured(sandbox, "benchmarks.exporter_worker", export, records, computers, reset=False)
    differential["changed_in_inventory"] = mutation["changed"]
    differential["before"] = {key: settled[key] for key in ("status", "message", "wall_seconds", "sent", "failed")}
    return differential


def copy_database(postgres: PostgresDatabases | None, names: list[str], directory: Path, label: str) -> str:
    """A copy of the size's database as it is now (names[0] on PostgreSQL, whose copy joins `names` to be dropped;
    the SQLite file in `directory`), named by `label`; returns the copy's URL."""
    if postgres is not None:
        name, url = postgres.copy(names[0], label)
        names.append(name)
        return url
    original = directory / "itam.sqlite3"
    for suffix in ("", "-wal"):
        if Path(f"{original}{suffix}").exists():
            shutil.copyfile(f"{original}{suffix}", directory / f"itam-{label}.sqlite3{suffix}")
    return f"sqlite:///{directory / f'itam-{label}.sqlite3'}"


def run_database(
    services: Services, workdir: Path, database: str, sizes: list[int], options: Options
) -> dict[int, dict[str, Any]]:
    """Every size on one database: a fresh database (SQLite file or PostgreSQL database) per size, gone after it."""
    postgres = PostgresDatabases(postgres_admin_url()) if database == "postgresql" else None
    results: dict[int, dict[str, Any]] = {}
    for size in sizes:
        directory = workdir / f"{database}-n{size}"
        names: list[str] = []
        copy = functools.partial(copy_database, postgres, names, directory)
        try:
            if postgres is not None:
                name, database_url = postgres.create(size)
                names.append(name)
            else:
                database_url = f"sqlite:///{directory / 'itam.sqlite3'}"
            results[size] = benchmark_size(services, workdir, database, database_url, size, options, copy)
        finally:
            for name in names if postgres is not None else ():
                postgres.drop(name)
            shutil.rmtree(directory, ignore_errors=True)
    return results


# -- targets ------------------------------------------------------------------------------------------------------


def bound(latency_ms: float) -> float:
    """The most any client with this batch size and requests in flight can reach at this round trip."""
    return BATCH_SIZE * IN_FLIGHT / (latency_ms / 1000) if latency_ms else float("inf")


def verdict(check: dict[str, Any]) -> str:
    if check["kind"] == "info":
        return "INFO"
    return "PASS" if check["pass"] else "MISS"


def _check(database: str, records: int | None, target: str, value: str, to_target: float, ok: bool) -> dict:
    return {
        "kind": "target",
        "database": database,
        "records": records,
        "target": target,
        "value": value,
        "ratio_to_target": to_target,
        "pass": ok,
    }


def evaluate(results: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each target per database and size, with its measured value, the ratio to the limit and PASS/MISS, and the
    exporter's ratios to the bare client and the peers (INFO). The throughput and CPU targets are set at 100,000 and
    1,000,000 records; when a run has neither, they are evaluated at its largest size and marked indicative."""
    checks: list[dict[str, Any]] = []
    for database, sizes in results.items():
        ordered = sorted(sizes)
        at_target = [n for n in ordered if n in TARGET_SIZES] or ordered[-1:]
        for n in ordered:
            entry = sizes[n]
            for who, figures_ in entry["ratios"].items():
                sample = entry["peers"]["pysnc"]["records"] if who == "pysnc" else None
                checks.append(
                    {
                        "kind": "info",
                        "database": database,
                        "records": n,
                        "target": f"exporter vs {WHO[who]}" + (f" (pysnc on a sample of {sample:,})" if sample else ""),
                        "value": ratio_text(figures_),
                        "ratios": figures_,
                    }
                )
            if n not in at_target:
                continue
            suffix = "" if n in TARGET_SIZES else " [indicative: below the target sizes]"
            exporter, bare = entry["exporter"], entry["bare"]
            cpu = entry["ratios"]["bare"]["cpu_per_record"] or float("inf")
            with_db = entry["ratios"]["bare"]["cpu_per_record_with_db"]
            db_text = (
                f"; {with_db:.2f} x with the database server's CPU" if database == "postgresql" and with_db else ""
            )
            checks.append(
                _check(
                    database,
                    n,
                    f"exporter CPU per record <= {TARGETS['cpu_vs_bare']:g} x bare client{suffix}",
                    f"{cpu:.2f} x ({exporter['cpu_seconds_per_100k']:.2f} vs {bare['cpu_seconds_per_100k']:.2f} "
                    f"s/100k){db_text}",
                    cpu / TARGETS["cpu_vs_bare"],
                    cpu <= TARGETS["cpu_vs_bare"],
                )
            )
            speed = entry["ratios"]["bare"]["throughput"] or 0.0
            checks.append(
                _check(
                    database,
                    n,
                    f"throughput at 0 ms >= {TARGETS['throughput_vs_bare']:g} x bare client{suffix}",
                    f"{speed:.2f} x ({exporter['records_per_second']:,.0f} vs {bare['records_per_second']:,.0f} rec/s)",
                    speed / TARGETS["throughput_vs_bare"],
                    speed >= TARGETS["throughput_vs_bare"],
                )
            )
        for n in ordered:
            latency = sizes[n].get("latency")
            if latency is None:
                continue
            limit = latency["bound_records_per_second"]
            rate, bare_rate = latency["exporter"]["records_per_second"], latency["bare"]["records_per_second"]
            checks.append(
                _check(
                    database,
                    n,
                    f"throughput at {latency['latency_ms']:g} ms >= {TARGETS['throughput_vs_bound']:g} x bound "
                    f"({limit:,.0f} rec/s)",
                    f"{rate:,.0f} rec/s = {rate / limit:.2f} x bound (bare client {bare_rate / limit:.2f} x)",
                    rate / limit / TARGETS["throughput_vs_bound"],
                    rate >= TARGETS["throughput_vs_bound"] * limit,
                )
            )
            # The bound counts the added latency only; every request also spends the sandbox's own handling time.
            handling = latency["bare"]["sandbox"]["handling_ms_per_request"]
            reachable = BATCH_SIZE * IN_FLIGHT / ((latency["latency_ms"] + handling) / 1000)
            checks.append(
                {
                    "kind": "info",
                    "database": database,
                    "records": n,
                    "target": f"throughput at {latency['latency_ms']:g} ms with the sandbox's handling time",
                    "value": (
                        f"{IN_FLIGHT} requests in flight of {latency['latency_ms']:g} + {handling:.1f} ms (the "
                        f"sandbox's own time per request) reach at most {reachable:,.0f} rec/s = "
                        f"{reachable / limit:.2f} x bound; exporter {rate / reachable:.2f} x that, bare client "
                        f"{bare_rate / reachable:.2f} x"
                    ),
                    "ratios": {"exporter": rate / reachable, "bare": bare_rate / reachable},
                }
            )
        if len(ordered) > 1:
            smallest, largest = sizes[ordered[0]], sizes[ordered[-1]]
            growth = largest["exporter"]["peak_rss_mb"] - smallest["exporter"]["peak_rss_mb"]
            checks.append(
                _check(
                    database,
                    ordered[-1],
                    f"peak memory within {TARGETS['memory_growth_mb']:g} MB of {ordered[0]:,} records",
                    f"{growth:+.1f} MB ({largest['exporter']['peak_rss_mb']:.1f} MB)",
                    growth / TARGETS["memory_growth_mb"],
                    growth <= TARGETS["memory_growth_mb"],
                )
            )
        largest = sizes[ordered[-1]]
        differential, full = largest["differential"], largest["exporter"]
        sent_pct = differential["sent"] / largest["records"] * 100
        checks.append(
            _check(
                database,
                ordered[-1],
                f"1% differential sends <= {TARGETS['differential_sent_pct']:g}% of records",
                f"{sent_pct:.2f}% ({differential['sent']:,} of {largest['records']:,})",
                sent_pct / TARGETS["differential_sent_pct"],
                sent_pct <= TARGETS["differential_sent_pct"],
            )
        )
        time_pct = differential["wall_seconds"] / full["wall_seconds"] * 100
        checks.append(
            _check(
                database,
                ordered[-1],
                f"1% differential takes <= {TARGETS['differential_time_pct']:g}% of the full export's time",
                f"{time_pct:.1f}% ({differential['wall_seconds']:.2f}s vs {full['wall_seconds']:.2f}s)",
                time_pct / TARGETS["differential_time_pct"],
                time_pct <= TARGETS["differential_time_pct"],
            )
        )
    return checks


def ratio_text(figures_: dict[str, float | None]) -> str:
    def show(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f} x"

    return (
        f"throughput {show(figures_['throughput'])}, CPU per record {show(figures_['cpu_per_record'])} "
        f"(with the database server's: {show(figures_['cpu_per_record_with_db'])})"
    )


# -- reporting ----------------------------------------------------------------------------------------------------


def steps(entry: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """An entry's measured steps in table order, each with its label."""
    pysnc = entry["peers"]["pysnc"]
    rows = [
        ("exporter", entry["exporter"]),
        ("bare client", entry["bare"]),
        ("script", entry["peers"]["script"]),
        (f"pysnc ({pysnc['api']}, n={pysnc['records']:,})", pysnc),
    ]
    if "latency" in entry:
        rows += [("exporter", entry["latency"]["exporter"]), ("bare client", entry["latency"]["bare"])]
    rows.append(("differential", entry["differential"]))
    return rows


def table(results: dict[str, dict[int, dict[str, Any]]]) -> str:
    header = (
        f"{'database':<10} {'records':>9} {'who':<23} {'lat ms':>6} {'sent':>9} {'seconds':>8} {'rec/s':>8} "
        f"{'CPU s/100k':>10} {'DB CPU s/100k':>13} {'peak MB':>7} {'sandbox ms/req':>14}"
    )
    lines = [header, "-" * len(header)]
    for database, sizes in results.items():
        for records in sorted(sizes):
            for who, r in steps(sizes[records]):
                no_server = database == "sqlite" or who == "bare client"  # in-process, or no database at all
                db_text = "-" if no_server else _maybe(r.get("db_cpu_seconds_per_100k"), "13.2f")
                lines.append(
                    f"{database:<10} {records:>9,} {who:<23} {r['latency_ms']:>6g} {r['sent']:>9,} "
                    f"{r['wall_seconds']:>8.2f} {r['records_per_second']:>8,.0f} {r['cpu_seconds_per_100k']:>10.2f} "
                    f"{db_text:>13} {r['peak_rss_mb']:>7.1f} {r['sandbox']['handling_ms_per_request']:>14.2f}"
                )
    lines += [
        "",
        "The exporter against each (0 ms): x throughput, x CPU per record (process; with the database server)",
    ]
    header = f"{'database':<10} {'records':>9} {'vs':<12} {'throughput':>10} {'CPU/record':>10} {'with DB':>8}"
    lines += [header, "-" * len(header)]
    for database, sizes in results.items():
        for records in sorted(sizes):
            for who, figures_ in sizes[records]["ratios"].items():
                lines.append(
                    f"{database:<10} {records:>9,} {WHO[who]:<12} {_maybe(figures_['throughput'], '9.2f')}x "
                    f"{_maybe(figures_['cpu_per_record'], '9.2f')}x "
                    f"{_maybe(figures_['cpu_per_record_with_db'], '7.2f')}x"
                )
    spreads = [
        (database, records, entry["pairs"])
        for database, sizes in results.items()
        for records, entry in sorted(sizes.items())
        if len(entry.get("pairs", [])) > 1
    ]
    if spreads:
        lines += [
            "",
            "Pairs at 0 ms (the exporter, then the bare client): ratios, lowest / median (the pair above) / highest",
        ]
        for database, records, pairs in spreads:
            cpu = sorted(pair["cpu_per_record"] or 0.0 for pair in pairs)
            throughput = sorted(pair["throughput"] or 0.0 for pair in pairs)
            middle = len(pairs) // 2
            lines.append(
                f"{database:<10} {records:>9,} {len(pairs)} pairs  CPU/record {cpu[0]:.2f} / {cpu[middle]:.2f} / "
                f"{cpu[-1]:.2f} x   throughput {throughput[0]:.2f} / {throughput[-1]:.2f} x (lowest / highest)"
            )
    return "\n".join(lines)


def _maybe(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "n/a".rjust(int(spec.split(".")[0]))


def chart(results: dict[str, dict[int, dict[str, Any]]], path: Path) -> None:
    """Three panels against records (log x): throughput, CPU seconds per 100k records, peak memory; a line per
    database for the exporter, the bare client and each peer (pysnc: its rate on the sample, at the dataset's size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, 3, figsize=(16, 4.8))
    colours = {"exporter": "tab:blue", "bare": "tab:gray", "script": "tab:orange", "pysnc": "tab:green"}
    lines = {"sqlite": "-", "postgresql": "--"}
    markers = {"sqlite": "o", "postgresql": "s"}
    extra: list[Any] = []  # lines only the CPU panel has, given a legend there
    for database, sizes in results.items():
        records = sorted(sizes)

        def pick(who: str, n: int, sizes: dict[int, dict[str, Any]] = sizes) -> dict[str, Any]:
            entry = sizes[n]
            return entry["peers"][who] if who in PEERS else entry[who]

        for who in ("exporter", "bare", "script", "pysnc"):
            label = f"{WHO[who]} ({database})" + (" [sample]" if who == "pysnc" else "")
            style = {"color": colours[who], "linestyle": lines.get(database, ":"), "marker": markers.get(database)}
            metrics = ("records_per_second", "cpu_seconds_per_100k", "peak_rss_mb")
            for panel, metric in zip(panels, metrics, strict=True):
                panel.plot(records, [pick(who, n)[metric] for n in records], label=label, **style)
        if database == "postgresql":
            with_db = [sizes[n]["exporter"]["cpu_seconds_per_100k_with_db"] for n in records]
            extra += panels[1].plot(
                records,
                with_db,
                color=colours["exporter"],
                linestyle=":",
                marker="^",
                label="exporter + database server (postgresql)",
            )
    titles = (
        ("Throughput (0 ms added latency)", "records / s"),
        ("CPU per 100,000 records (process)", "CPU seconds"),
        ("Peak memory (RSS) per process", "MB"),
    )
    for panel, (title, unit) in zip(panels, titles, strict=True):
        panel.set_xscale("log")
        panel.set_yscale("log" if unit != "MB" else "linear")
        panel.set_xlabel("records")
        panel.set_ylabel(unit)
        panel.set_title(title)
        panel.grid(True, alpha=0.3, which="both")
    panels[2].set_ylim(bottom=0)
    panels[0].legend(fontsize=7)
    if extra:
        panels[1].legend(handles=extra, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_module(module: str, out: Path, quick: bool) -> dict[str, Any]:
    """Another benchmark's own JSON (`python -m benchmarks.<module> --json-out FILE`, with our ``--quick``): the
    simulated Sunday (benchmarks.sunday) and the adaptive-concurrency runs (benchmarks.adaptive); what went wrong
    otherwise."""
    if importlib.util.find_spec(f"benchmarks.{module}") is None:
        return {"skipped": f"benchmarks/{module}.py does not exist"}
    path = out / f"{module}.json"
    path.unlink(missing_ok=True)
    log(f"{module}: python -m benchmarks.{module} ...")
    completed = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--json-out", str(path), *(["--quick"] if quick else [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if completed.returncode != 0 or not path.exists():
        return {"error": f"exit {completed.returncode}", "stderr": completed.stderr[-4000:]}
    log(completed.stdout.strip())
    return json.loads(path.read_text())


def parse_sizes(text: str) -> list[int]:
    return sorted({int(value.strip().replace("_", "")) for value in text.split(",") if value.strip()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="comma-separated record counts [default: 10000,100000]")
    parser.add_argument("--databases", default=",".join(DATABASES), help="sqlite,postgresql [default: both]")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZE:,} records, pysnc on {QUICK_PEER_SAMPLE}")
    parser.add_argument("--peer-sample", type=int, help=f"records pysnc inserts [default: {DEFAULT_PEER_SAMPLE:,}]")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="latency added for the bound check")
    parser.add_argument("--latency-sizes", help="sizes to run the latency check at [default: every size >= 100,000]")
    parser.add_argument(
        "--pairs", type=int, default=1, help="run the 0 ms exporter and bare client steps this many times in turn [1]"
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile a full export at the largest size")
    parser.add_argument("--sunday", action="store_true", help="also run benchmarks.sunday and merge its JSON")
    parser.add_argument("--adaptive", action="store_true", help="also run benchmarks.adaptive and merge its JSON")
    parser.add_argument("--publish", action="store_true", help="copy the results to the tracked latest.json / .png")
    parser.add_argument("--out", type=Path, default=PUBLISHED)
    parser.add_argument("--workdir", type=Path, help="where the datasets go [default: a temporary folder]")
    args = parser.parse_args(argv)
    databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = [name for name in databases if name not in DATABASES]
    if unknown or not databases:
        parser.error(f"--databases takes {', '.join(DATABASES)}, not {args.databases!r}")
    sizes = [QUICK_SIZE] if args.quick else parse_sizes(args.sizes) if args.sizes else list(DEFAULT_SIZES)
    peer_sample = args.peer_sample or (QUICK_PEER_SAMPLE if args.quick else DEFAULT_PEER_SAMPLE)
    if args.latency_sizes:
        latency_sizes = set(parse_sizes(args.latency_sizes))
        if not latency_sizes <= set(sizes):
            parser.error(f"--latency-sizes must be among the sizes run ({', '.join(map(str, sizes))})")
    else:
        latency_sizes = {n for n in sizes if n >= 100_000} or {max(sizes)}
    if args.pairs < 1:
        parser.error("--pairs takes 1 or more")
    if "postgresql" in databases:
        PostgresDatabases(postgres_admin_url()).check()
    args.out = args.out.resolve()  # the workers run from the repository root
    args.out.mkdir(parents=True, exist_ok=True)
    profile_size = max(sizes) if args.profile else None
    options = Options(args.latency_ms, latency_sizes, peer_sample, profile_size, args.out, args.pairs)
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="itam-bench-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, dict[int, dict[str, Any]]] = {}
    try:
        with Services(workdir) as services:
            for database in databases:
                results[database] = run_database(services, workdir, database, sizes, options)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    checks = evaluate(results)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "batch_size": BATCH_SIZE,
        "requests_in_flight": IN_FLIGHT,
        "peer_sample": peer_sample,
        "latency_ms": args.latency_ms,
        "latency_sizes": sorted(latency_sizes),
        "target_sizes": list(TARGET_SIZES),
        "targets_config": TARGETS,
        "elapsed_seconds": round(time.monotonic() - started, 1),
        "databases": {db: {"sizes": {str(n): results[db][n] for n in sorted(results[db])}} for db in results},
        "targets": checks,
        "adaptive": run_module("adaptive", args.out, args.quick) if args.adaptive else None,
        "sunday": run_module("sunday", args.out, args.quick) if args.sunday else None,
    }
    results_path, chart_path = args.out / "results.json", args.out / "chart.png"
    results_path.write_text(json.dumps(report, indent=2))
    chart(results, chart_path)
    print(table(results))
    print()
    for check in checks:
        where = f"[{check['database']} {check['records']:,}]" if check["records"] else f"[{check['database']}]"
        tail = f" (ratio to target {check['ratio_to_target']:.2f})" if check["kind"] == "target" else ""
        print(f"{verdict(check)}  {where} {check['target']}: {check['value']}{tail}")
    print(f"\nresults: {results_path}, chart: {chart_path}")
    if args.publish:
        PUBLISHED.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(results_path, PUBLISHED / "latest.json")
        shutil.copyfile(chart_path, PUBLISHED / "benchmark.png")
        print(f"published: {PUBLISHED / 'latest.json'}, {PUBLISHED / 'benchmark.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
