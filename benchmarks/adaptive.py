"""Adaptive requests in flight, measured (issue #15): the exporter against a sandbox whose capacity is limited the
way an instance's is, and against an hourly-style rate limit rule scaled down to seconds.

* **queue**: 8 API semaphores, 300 ms service time per request, an endless queue (more requests only wait longer);
* **full queue**: the same, but no queue: a request past 8 at once is answered 429 without Retry-After (a full
  API_INT queue, ServiceNow KB0635398);
* **rate limit**: `--rate-limit` requests per `--rate-window` seconds (ServiceNow counts per hour; the sandbox's
  window is shorter so the run takes seconds), 429 with Retry-After and X-RateLimit-Reset past it.

Each runs a full export of the same installs (SQLite; their computers are in the sandbox already) in this
process, with the ceiling `--ceiling` (ITAM_EXPORT_REQUESTS_IN_FLIGHT) and, for comparison, with the old fixed four
(ceiling 4).
Figures: records/s (goodput: records ServiceNow accepted / seconds), the bound the capacity allows
(semaphores x batch / service time, or for the rate limit: allowed requests in the windows the run touched), the
sandbox's count of our requests inside it at each arrival (peak, median of the second half), 429s answered, and
records failed.

    .venv/bin/python -m benchmarks.adaptive [--records 100000] [--quick] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BATCH_SIZE, CLIENT_ID, CLIENT_SECRET, TENANT
from benchmarks.run import Sandbox

BATCH = BATCH_SIZE
TYPES = ("installed_applications",)  # their computers are put in the sandbox first, as another source's records


def control(sandbox: Sandbox, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST (with a payload) or GET the sandbox's control API."""
    url = f"{sandbox.url}/sandbox/api/{path}"
    answer = requests.post(url, json=payload, timeout=300) if payload is not None else requests.get(url, timeout=60)
    answer.raise_for_status()
    return answer.json()


def make_app(workdir: Path, sandbox_url: str, redis_url: str, ceiling: int):
    from cryptography.fernet import Fernet

    from demo_portal import create_app

    env = {
        "ITAM_DEMO": "0",
        "SECRET_KEY": "benchmark-secret-key",
        "ITAM_ENCRYPTION_KEYS": (workdir / "key").read_text() if (workdir / "key").exists() else "",
        "DATABASE_URL": f"sqlite:///{workdir / 'itam.sqlite3'}",
        "REDIS_URL": redis_url,
        "ITAM_SERVICENOW_CLIENT_ID": CLIENT_ID,
        "ITAM_SERVICENOW_CLIENT_SECRET": CLIENT_SECRET,
        "ITAM_SERVICENOW_ALLOW_INSECURE": "1",
        "ITAM_EXPORT_BATCH_SIZE": str(BATCH),
        "ITAM_EXPORT_REQUESTS_IN_FLIGHT": str(ceiling),
        "ITAM_EXPORT_READ_BACK_WAIT_SECONDS": "0",
        "ITAM_EXPORT_MAX_WAIT_SECONDS": "600",
    }
    if not env["ITAM_ENCRYPTION_KEYS"]:
        (workdir / "key").write_text(Fernet.generate_key().decode())
        env["ITAM_ENCRYPTION_KEYS"] = (workdir / "key").read_text()
    return create_app(env=env, instance_path=str(workdir / "instance"))


def prepare(workdir: Path, sandbox: Sandbox, redis_url: str, records: int) -> tuple[int, list[dict[str, str]]]:
    from demo_portal.demo_data import age_inventory, generate_inventory
    from itam_admin.db import db
    from itam_admin.identity import Identity
    from itam_admin.settings.store import save_settings
    from itam_admin.settings.values import SettingsChange

    app = make_app(workdir, sandbox.url, redis_url, 4)
    with app.app_context():
        import itam_admin.models  # noqa: F401

        db.create_all()
        created = generate_inventory(TENANT, computers=max(1, records // 20), installs=records, contracts=0, seed=7)
        age_inventory(TENANT)
        token = control(sandbox, "refresh_tokens", {"username": "admin", "password": "admin", "client_id": CLIENT_ID})[
            "refresh_token"
        ]
        change = SettingsChange(
            instance_url=sandbox.url,
            username="admin",
            use_custom_credentials=False,
            export_data_types=TYPES,
            token=token,
        )
        save_settings(TENANT, change, Identity("1", "Bench", TENANT, frozenset()))
        from sqlalchemy import text

        computers = [
            {"name": name, "serial_number": serial or ""}
            for name, serial in db.session.execute(text("SELECT name, serial_number FROM itam_computer"))
        ]
        db.engine.dispose()
    copy_database(workdir / "itam.sqlite3", workdir / "pristine.sqlite3")
    return created["installed_applications"], computers


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database, write-ahead log included (SQLite's backup API)."""
    with sqlite3.connect(source) as origin, sqlite3.connect(target) as copy:
        origin.backup(copy)


def export_once(
    workdir: Path, sandbox: Sandbox, redis_url: str, ceiling: int, faults: dict[str, Any], computers: list[dict]
) -> dict:
    from itam_admin.db import db
    from itam_admin.exports.exporter import export_run
    from itam_admin.exports.models import ExportRun
    from itam_admin.exports.runs import create_run

    # Every run starts from the same place: the prepared database (nothing sent yet) and a sandbox holding only the
    # computers the installs refer to.
    copy_database(workdir / "pristine.sqlite3", workdir / "itam.sqlite3")
    sandbox.reset(computers=computers)
    control(sandbox, "faults", {"clear": True, **faults})
    app = make_app(workdir, sandbox.url, redis_url, ceiling)
    with app.app_context():
        run_id = create_run(TENANT, "manual", None, True).id
        db.session.commit()
        before = sandbox.state()
        # As in every step of benchmarks.run: the sandbox's transforms would take the cores this export and the
        # sandbox's request handling run on (a real instance transforms on its own nodes), so they wait until after.
        sandbox.hold_transforms(True)
        try:
            started_at = time.time()
            started = time.perf_counter()
            status = export_run(run_id)
            seconds = time.perf_counter() - started
            ended_at = time.time()
        finally:
            sandbox.hold_transforms(False)
        after = sandbox.state()
        db.session.expire_all()
        run = db.session.get(ExportRun, run_id)
        sent = sum(dt.sent or 0 for dt in run.data_types)
        failed = sum(dt.failed or 0 for dt in run.data_types)
        refused = [f.message for f in run.failed_batches if f.error_kind != "rejected_by_transform"]
        message = run.message
        db.engine.dispose()
    capacity = control(sandbox, "faults").get("capacity") or {}
    arrivals = capacity.get("arrivals") or []
    later = arrivals[len(arrivals) // 2 :]
    api = after["requests"].get("api", 0) - before["requests"].get("api", 0)
    return {
        "ceiling": ceiling,
        "status": status,
        "message": message,
        "seconds": round(seconds, 3),
        "started_at": started_at,
        "ended_at": ended_at,
        "sent": sent,
        "failed": failed,
        "batches_refused": len(refused),
        "records_per_second": round(sent / seconds, 1) if seconds else 0.0,
        "api_requests": api,
        "answered_429": _answered_429(before, after),
        "peak_in_flight_seen": capacity.get("peak_inside"),
        "median_in_flight_second_half": statistics.median(later) if later else None,
        "max_in_flight_second_half": max(later) if later else None,
    }


def _answered_429(before: dict[str, Any], after: dict[str, Any]) -> int:
    """429s the sandbox answered between two snapshots (a full queue's and a rate limit rule's alike)."""
    return int(after.get("statuses", {}).get("429", 0)) - int(before.get("statuses", {}).get("429", 0))


def scenarios(records: int, rate_limit: int, rate_window: float) -> list[tuple[str, dict[str, Any], float | None]]:
    """(name, faults, bound in records/s or None when it depends on the windows touched)."""
    capacity_bound = 8 * BATCH / 0.3
    return [
        (
            "queue: 8 semaphores, 300 ms, endless queue",
            {"capacity": {"concurrent": 8, "service_ms": 300}},
            capacity_bound,
        ),
        (
            "full queue: 8 semaphores, 300 ms, 429 past 8",
            {"capacity": {"concurrent": 8, "queue": 0, "service_ms": 300}},
            capacity_bound,
        ),
        (
            f"rate limit: {rate_limit} requests per {rate_window:g} s",
            {"rate_limit": {"limit": rate_limit, "window_seconds": rate_window}},
            None,  # limit x batch / window, worked out in main()
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.adaptive", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="installs exported")
    parser.add_argument("--ceiling", type=int, default=16, help="ITAM_EXPORT_REQUESTS_IN_FLIGHT for the adaptive runs")
    parser.add_argument("--rate-limit", type=int, default=100, help="requests per window of the rate limit rule")
    parser.add_argument("--rate-window", type=float, default=10.0, help="seconds per rate limit window")
    parser.add_argument("--quick", action="store_true", help="2,000 records, a 10-request window")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.rate_limit, args.rate_window = 2_000, 6, 3.0
    from demo_portal.embedded_redis import free_port, start_redis_server

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="itam-adaptive-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        (workdir / "redis").mkdir()
        redis = start_redis_server(port, workdir / "redis")
        sandbox = Sandbox.start(workdir, "sandbox")
        try:
            redis_url = f"redis://127.0.0.1:{port}/0"
            total, computers = prepare(workdir, sandbox, redis_url, args.records)
            for name, faults, bound in scenarios(args.records, args.rate_limit, args.rate_window):
                for ceiling in (args.ceiling, 4):
                    print(f"[adaptive] {name}, ceiling {ceiling} ...", file=sys.stderr, flush=True)
                    result = export_once(workdir, sandbox, redis_url, ceiling, faults, computers)
                    if bound is None:  # the rule's rate: limit requests of a batch each per window
                        bound = args.rate_limit * BATCH / args.rate_window
                        # Besides: requests admitted against what the rule allowed in the windows the run touched
                        # (the sandbox's windows are aligned on its clock, epoch seconds).
                        windows = int(result["ended_at"] // args.rate_window - result["started_at"] // args.rate_window)
                        allowed = args.rate_limit * (windows + 1)
                        admitted = result["api_requests"] - result["answered_429"]
                        result["windows_touched"], result["allowed_requests"] = windows + 1, allowed
                        result["admitted_of_allowed"] = round(admitted / allowed, 3)
                    result["bound"] = round(bound, 1)
                    result["ratio_to_bound"] = round(result["records_per_second"] / bound, 3)
                    results.append({"scenario": name, "adaptive": ceiling != 4, "records": total, **result})
        finally:
            sandbox.stop()
            redis.terminate()
    header = (
        f"{'scenario':<46} {'ceiling':>7} {'rec/s':>8} {'x bound':>7} {'peak':>5} {'med 2nd':>7} {'429s':>5} "
        f"{'failed':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['scenario']:<46} {r['ceiling']:>7} {r['records_per_second']:>8,.0f} {r['ratio_to_bound']:>7.2f} "
            f"{r['peak_in_flight_seen'] or '-':>5} {r['median_in_flight_second_half'] or '-':>7} "
            f"{r['answered_429']:>5} {r['failed']:>6}"
        )
    if args.json_out:
        args.json_out.write_text(json.dumps({"records": args.records, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
