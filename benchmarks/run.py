"""The exporter benchmark (SPEC section 10, Performance): in one run, against one sandbox in its own process,
it measures at each size

* the exporter (``export_run``, a full export of one tenant's installed applications, each export in a fresh
  process): records/s, CPU seconds per 100,000 records, peak RSS;
* a bare client posting the same mapped records, pre-built as JSON batches of 200, with one keep-alive
  ``requests.Session`` per request in flight (4): the same three figures;
* the differential export after 1% of the installs change (records sent and time against the full export);

and once, with the sandbox adding ``--latency-ms`` to every request, the exporter's throughput against the bound
batch size x requests in flight / round trip. It reads the sandbox's own handling time from its state endpoint.

    .venv/bin/python -m benchmarks.run [--sizes 10000,100000,1000000] [--quick] [--latency-ms 100] [--out DIR]

Prints a table and the targets (PASS/MISS), writes DIR/results.json and DIR/benchmark.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CLIENT_ID, CLIENT_SECRET, parse_result
from demo_portal.embedded_redis import free_port, start_redis_server

ROOT = Path(__file__).resolve().parent.parent
BATCH_SIZE = 200
IN_FLIGHT = 4
QUICK_SIZE = 2_000
DEFAULT_SIZES = (10_000, 100_000)
TARGETS = {
    "throughput_vs_bare": 0.8,
    "throughput_vs_bound": 0.85,
    "cpu_vs_bare": 1.5,
    "memory_growth_mb": 30.0,
    "differential_sent_pct": 1.05,
    "differential_time_pct": 5.0,
}


class Services:
    """A redis-server and a sandbox, each in a process of its own, for the length of a benchmark."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen] = []
        self.redis_url = ""
        self.sandbox_url = ""

    def __enter__(self) -> Services:
        try:
            self._start_redis()
            self._start_sandbox()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def _start_redis(self) -> None:
        port = free_port()
        redis_dir = self.workdir / "redis"
        redis_dir.mkdir(exist_ok=True)
        self.processes.append(start_redis_server(port, redis_dir))
        self.redis_url = f"redis://127.0.0.1:{port}/0"

    def _start_sandbox(self) -> None:
        env = {**os.environ, "ITAM_SERVICENOW_CLIENT_ID": CLIENT_ID, "ITAM_SERVICENOW_CLIENT_SECRET": CLIENT_SECRET}
        log = (self.workdir / "sandbox.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "servicenow_sandbox", "--port", "0", "--memory"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        self.processes.append(process)
        line = process.stdout.readline() if process.stdout else ""
        if "listening on" not in line:
            raise RuntimeError(f"the sandbox did not start: {line!r}; see {self.workdir / 'sandbox.log'}")
        self.sandbox_url = line.rsplit(" ", 1)[-1].strip()

    # -- the sandbox's control API --------------------------------------------------------------------------------

    def reset(self, latency_ms: float = 0.0) -> None:
        """Forget imported records and faults, then set the latency for the next step."""
        self.wait_idle()
        requests.post(f"{self.sandbox_url}/sandbox/api/reset", json={}, timeout=120).raise_for_status()
        answer = requests.post(f"{self.sandbox_url}/sandbox/api/faults", json={"latency_ms": latency_ms}, timeout=30)
        answer.raise_for_status()

    def state(self) -> dict[str, Any]:
        answer = requests.get(f"{self.sandbox_url}/sandbox/api/state", timeout=60)
        answer.raise_for_status()
        return answer.json()

    def wait_idle(self, limit: float = 1800.0) -> dict[str, Any]:
        """Wait for the sandbox's transform worker to finish, so one step's work never overlaps the next."""
        deadline = time.monotonic() + limit
        while True:
            answer = requests.get(f"{self.sandbox_url}/sandbox/api/state", params={"wait_idle": 60}, timeout=90)
            answer.raise_for_status()
            state = answer.json()
            if state.get("idle") or time.monotonic() > deadline:
                return state


def run_worker(module: str, *args: str, timeout: float = 7200) -> dict[str, Any]:
    """Run a benchmark step in a fresh Python process and return the result it printed."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
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


def figures(result: dict[str, Any], records: int) -> dict[str, Any]:
    """Add records/s and CPU per 100k records to a worker's result."""
    sent = result["sent"] or 0
    wall = result["wall_seconds"]
    result["records_per_second"] = sent / wall if wall else 0.0
    result["cpu_seconds_per_100k"] = result["cpu_seconds"] / sent * 100_000 if sent else 0.0
    result["records"] = records
    return result


def measured(services: Services, module: str, args: list[str], records: int, latency_ms: float = 0.0) -> dict:
    """One export or bare-client pass against a freshly reset sandbox, with the sandbox's view of it."""
    services.reset(latency_ms)
    before = services.state()
    result = figures(run_worker(module, *args), records)
    after = services.wait_idle()
    result["sandbox"] = sandbox_delta(before, after)
    result["latency_ms"] = latency_ms
    result["load_average_1m"] = os.getloadavg()[0]  # other work on the machine skews wall times, not CPU seconds
    return result


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def benchmark_size(
    services: Services, workdir: Path, size: int, latency_ms: float, with_latency: bool, profile: Path | None
) -> dict[str, Any]:
    directory = workdir / f"n{size}"
    log(f"[{size:,}] generating {size:,} installed applications ...")
    prepared = run_worker(
        "benchmarks.dataset",
        "prepare",
        "--dir",
        str(directory),
        "--records",
        str(size),
        "--sandbox-url",
        services.sandbox_url,
        "--redis-url",
        services.redis_url,
    )
    records = prepared["records"]
    config = prepared["config"]
    batches = str(directory / "batches.jsonl")
    bare_args = ["--batches", batches, "--sandbox-url", services.sandbox_url, "--in-flight", str(IN_FLIGHT)]
    log(f"[{size:,}] generated in {prepared['generate_seconds']:.1f}s; full export ...")
    export_args = ["--config", config, "--full"]
    exporter = measured(services, "benchmarks.exporter_worker", export_args, records)
    log(f"[{size:,}] exporter {exporter['records_per_second']:,.0f} rec/s; bare client ...")
    bare = measured(services, "benchmarks.baseline_worker", bare_args, records)
    log(f"[{size:,}] bare client {bare['records_per_second']:,.0f} rec/s")
    entry: dict[str, Any] = {"records": records, "prepare": prepared, "exporter": exporter, "bare": bare}
    if with_latency:
        log(f"[{size:,}] with {latency_ms:g} ms added per request ...")
        entry["latency"] = {
            "latency_ms": latency_ms,
            "exporter": measured(services, "benchmarks.exporter_worker", export_args, records, latency_ms),
            "bare": measured(services, "benchmarks.baseline_worker", bare_args, records, latency_ms),
        }
    if profile is not None:
        log(f"[{size:,}] profiling a full export ...")
        measured(services, "benchmarks.exporter_worker", [*export_args, "--profile", str(profile)], records)
    log(f"[{size:,}] changing 1% and exporting the difference ...")
    mutation = run_worker("benchmarks.dataset", "mutate", "--dir", str(directory), "--change-fraction", "0.01")
    differential = measured(services, "benchmarks.exporter_worker", ["--config", config], records)
    differential["changed_in_inventory"] = mutation["changed"]
    entry["differential"] = differential
    shutil.rmtree(directory, ignore_errors=True)
    return entry


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def evaluate(sizes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target with its measured value, the ratio to the limit and PASS/MISS."""
    ordered = [sizes[n] for n in sorted(sizes)]
    checks: list[dict[str, Any]] = []
    worst = min(ordered, key=lambda e: e["exporter"]["records_per_second"] / e["bare"]["records_per_second"])
    ratio = worst["exporter"]["records_per_second"] / worst["bare"]["records_per_second"]
    checks.append(
        {
            "target": "throughput >= 0.8 x bare client (0 ms, worst size)",
            "value": f"{ratio:.2f} x at {worst['records']:,}",
            "ratio_to_target": ratio / TARGETS["throughput_vs_bare"],
            "pass": ratio >= TARGETS["throughput_vs_bare"],
        }
    )
    with_latency = [e for e in ordered if "latency" in e]
    for entry in with_latency:
        latency = entry["latency"]
        bound = BATCH_SIZE * IN_FLIGHT / (latency["latency_ms"] / 1000)
        rate = latency["exporter"]["records_per_second"]
        checks.append(
            {
                "target": f"throughput at {latency['latency_ms']:g} ms >= 0.85 x bound ({bound:,.0f} rec/s)",
                "value": f"{rate:,.0f} rec/s = {rate / bound:.2f} x bound at {entry['records']:,}",
                "ratio_to_target": rate / bound / TARGETS["throughput_vs_bound"],
                "pass": rate >= TARGETS["throughput_vs_bound"] * bound,
            }
        )
    worst = max(ordered, key=lambda e: e["exporter"]["cpu_seconds_per_100k"] / e["bare"]["cpu_seconds_per_100k"])
    ratio = worst["exporter"]["cpu_seconds_per_100k"] / worst["bare"]["cpu_seconds_per_100k"]
    checks.append(
        {
            "target": "CPU per record <= 1.5 x bare client (worst size)",
            "value": f"{ratio:.2f} x at {worst['records']:,}",
            "ratio_to_target": ratio / TARGETS["cpu_vs_bare"],
            "pass": ratio <= TARGETS["cpu_vs_bare"],
        }
    )
    growth = ordered[-1]["exporter"]["peak_rss_mb"] - ordered[0]["exporter"]["peak_rss_mb"]
    checks.append(
        {
            "target": f"peak memory at {ordered[-1]['records']:,} within 30 MB of {ordered[0]['records']:,}",
            "value": f"{growth:+.1f} MB",
            "ratio_to_target": growth / TARGETS["memory_growth_mb"],
            "pass": growth <= TARGETS["memory_growth_mb"],
        }
    )
    largest = ordered[-1]
    differential, full = largest["differential"], largest["exporter"]
    sent_pct = differential["sent"] / largest["records"] * 100
    checks.append(
        {
            "target": "1% differential sends <= 1.05% of records",
            "value": f"{sent_pct:.2f}% ({differential['sent']:,} of {largest['records']:,})",
            "ratio_to_target": sent_pct / TARGETS["differential_sent_pct"],
            "pass": sent_pct <= TARGETS["differential_sent_pct"],
        }
    )
    time_pct = differential["wall_seconds"] / full["wall_seconds"] * 100
    checks.append(
        {
            "target": "1% differential takes <= 5% of the full export's time",
            "value": f"{time_pct:.1f}% ({differential['wall_seconds']:.2f}s vs {full['wall_seconds']:.2f}s)",
            "ratio_to_target": time_pct / TARGETS["differential_time_pct"],
            "pass": time_pct <= TARGETS["differential_time_pct"],
        }
    )
    return checks


def table(sizes: dict[int, dict[str, Any]]) -> str:
    header = (
        f"{'records':>10} {'who':<12} {'lat ms':>6} {'sent':>9} {'seconds':>8} {'rec/s':>8} {'CPU s/100k':>10} "
        f"{'peak MB':>8} {'sandbox ms/req':>14}"
    )
    lines = [header, "-" * len(header)]

    def row(records: int, who: str, r: dict[str, Any]) -> str:
        return (
            f"{records:>10,} {who:<12} {r['latency_ms']:>6g} {r['sent']:>9,} {r['wall_seconds']:>8.2f} "
            f"{r['records_per_second']:>8,.0f} {r['cpu_seconds_per_100k']:>10.2f} {r['peak_rss_mb']:>8.1f} "
            f"{r['sandbox']['handling_ms_per_request']:>14.2f}"
        )

    for records in sorted(sizes):
        entry = sizes[records]
        lines.append(row(records, "exporter", entry["exporter"]))
        lines.append(row(records, "bare client", entry["bare"]))
        if "latency" in entry:
            lines.append(row(records, "exporter", entry["latency"]["exporter"]))
            lines.append(row(records, "bare client", entry["latency"]["bare"]))
        lines.append(row(records, "differential", entry["differential"]))
    return "\n".join(lines)


def chart(sizes: dict[int, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = sorted(sizes)
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    for who, style in (("exporter", "o-"), ("bare", "s--")):
        label = "exporter" if who == "exporter" else "bare client"
        speed.plot(records, [sizes[n][who]["records_per_second"] for n in records], style, label=label)
        memory.plot(records, [sizes[n][who]["peak_rss_mb"] for n in records], style, label=label)
    for axis, title, unit in (
        (speed, "Throughput (0 ms added latency)", "records / s"),
        (memory, "Peak memory (RSS) per export process", "MB"),
    ):
        axis.set_xscale("log")
        axis.set_xlabel("records exported")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="comma-separated record counts [default: 10000,100000]")
    parser.add_argument("--quick", action="store_true", help=f"one small size ({QUICK_SIZE:,} records)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="latency added for the bound check")
    parser.add_argument("--latency-size", type=int, help="size to run the latency check at [default: <=100,000]")
    parser.add_argument("--profile", action="store_true", help="also cProfile a full export at the largest size")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--workdir", type=Path, help="where the datasets go [default: a temporary folder]")
    args = parser.parse_args(argv)
    if args.quick:
        sizes = [QUICK_SIZE]
    elif args.sizes:
        sizes = sorted({int(value.replace("_", "")) for value in args.sizes.split(",") if value.strip()})
    else:
        sizes = list(DEFAULT_SIZES)
    latency_size = args.latency_size or max([n for n in sizes if n <= 100_000] or [min(sizes)])
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="itam-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[int, dict[str, Any]] = {}
    try:
        with Services(workdir) as services:
            for size in sizes:
                profile = args.out / f"profile-{size}.pstats" if args.profile and size == sizes[-1] else None
                results[size] = benchmark_size(services, workdir, size, args.latency_ms, size == latency_size, profile)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    checks = evaluate(results)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "batch_size": BATCH_SIZE,
        "requests_in_flight": IN_FLIGHT,
        "elapsed_seconds": round(time.monotonic() - started, 1),
        "sizes": {str(n): results[n] for n in sorted(results)},
        "targets": checks,
    }
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    chart(results, args.out / "benchmark.png")
    print(table(results))
    print()
    for check in checks:
        ratio = f"ratio to target {check['ratio_to_target']:.2f}"
        print(f"{verdict(check['pass'])}  {check['target']}: {check['value']} ({ratio})")
    print(f"\nresults: {args.out / 'results.json'}, chart: {args.out / 'benchmark.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
