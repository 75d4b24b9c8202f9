"""One export, measured, in a process of its own (so its peak memory is this export's alone): the real exporter
(``export_run``) reading the dataset's database (SQLite or PostgreSQL) and posting to the sandbox.

    python -m benchmarks.exporter_worker --config D/config.json [--full] [--profile FILE] [--read-back-wait S]

Prints one ``BENCH-RESULT {json}`` line: wall seconds, CPU seconds, peak RSS, the run's counts and, on PostgreSQL,
the database server's CPU for the export (benchmarks.dbcpu; sampled while the app's pool still holds its
connections).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA_TYPE, TENANT, Meter, current_rss_mb, emit, peak_rss_mb
from benchmarks.dbcpu import not_measured, sampler
from benchmarks.portal_app import load_app


def run_export(
    config: Path, full: bool, profile: Path | None = None, read_back_wait: float | None = None
) -> dict[str, object]:
    from itam_admin.db import db
    from itam_admin.exports.exporter import export_run
    from itam_admin.exports.models import ExportRun
    from itam_admin.exports.runs import create_run

    env = {} if read_back_wait is None else {"ITAM_EXPORT_READ_BACK_WAIT_SECONDS": f"{read_back_wait:g}"}
    app, settings = load_app(config, env)
    database_url = settings["env"]["DATABASE_URL"]
    with app.app_context():
        run_id = create_run(TENANT, "manual", None, full).id
        db.session.commit()
        rss_before = current_rss_mb()
        profiler = None
        if profile is not None:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        database_cpu = sampler(database_url)
        if database_cpu is not None:
            database_cpu.start()
        meter = Meter().start()
        status = export_run(run_id)
        meter.stop()
        # Before anything closes the pool: a backend that is gone at this sample takes its CPU with it.
        db_cpu = database_cpu.stop() if database_cpu is not None else not_measured(database_url)
        if database_cpu is not None:
            database_cpu.close()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(profile))
        peak = peak_rss_mb()
        db.session.expire_all()
        run = db.session.get(ExportRun, run_id)
        counts = next(dt for dt in run.data_types if dt.data_type == DATA_TYPE)
        result = {
            "status": status,
            "message": run.message,
            "full": full,
            "wall_seconds": meter.wall,
            "cpu_seconds": meter.cpu,
            "rss_before_mb": rss_before,
            "peak_rss_mb": peak,
            "total": counts.total,
            "sent": counts.sent,
            "failed": counts.failed,
            "new": counts.new,
            "changed": counts.changed,
            "unchanged": counts.unchanged,
            "retired": counts.retired,
            **db_cpu,
        }
        db.engine.dispose()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.exporter_worker")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--full", action="store_true", help="a full export (every record), not a differential one")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the export to this file")
    parser.add_argument(
        "--read-back-wait", type=float, help="ITAM_EXPORT_READ_BACK_WAIT_SECONDS for this export [the dataset's: 0]"
    )
    args = parser.parse_args(argv)
    emit(run_export(args.config, args.full, args.profile, args.read_back_wait))
    return 0


if __name__ == "__main__":
    sys.exit(main())
