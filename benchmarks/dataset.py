"""Dataset steps of the benchmark, each run in its own process: ``prepare`` (generate one tenant's installed
applications into a fresh SQLite file, save ServiceNow settings pointing at the sandbox, and write the baseline's
pre-built JSON batches) and ``mutate`` (change a fraction of the installs, for the differential export).

    python -m benchmarks.dataset prepare --dir D --records N --sandbox-url URL --redis-url URL
    python -m benchmarks.dataset mutate --dir D --change-fraction 0.01
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CLIENT_ID, CLIENT_SECRET, DATA_TYPE, TENANT, Meter, emit, refresh_token
from benchmarks.portal_app import app_env, load_app

BATCH_SIZE = 200


def write_batches(path: Path) -> tuple[int, int]:
    """The same mapped records the exporter sends (planner.encode of the source's records), in batches of 200: one
    `{"records":[...]}` body a line. Returns (records, batches)."""
    from itam_admin.exports.planner import encode
    from itam_admin.inventory.source import SqlInventorySource

    records = batches = 0
    chunk: list[bytes] = []
    with path.open("wb") as out:
        for record in SqlInventorySource().iter_records(TENANT, DATA_TYPE):
            chunk.append(encode(record))
            if len(chunk) == BATCH_SIZE:
                out.write(b'{"records":[' + b",".join(chunk) + b"]}\n")
                records, batches, chunk = records + len(chunk), batches + 1, []
        if chunk:
            out.write(b'{"records":[' + b",".join(chunk) + b"]}\n")
            records, batches = records + len(chunk), batches + 1
    return records, batches


def prepare(directory: Path, records: int, sandbox_url: str, redis_url: str) -> dict[str, object]:
    from cryptography.fernet import Fernet

    from demo_portal.demo_data import age_inventory, generate_inventory
    from itam_admin.db import db
    from itam_admin.identity import Identity
    from itam_admin.settings.store import save_settings
    from itam_admin.settings.values import SettingsChange

    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "itam.sqlite3"
    if database.exists():
        database.unlink()
    config = {
        "env": app_env(database, redis_url, Fernet.generate_key().decode(), CLIENT_ID, CLIENT_SECRET),
        "instance_path": str(directory / "instance"),
        "sandbox_url": sandbox_url,
        "records": records,
    }
    config_path = directory / "config.json"
    config_path.write_text(json.dumps(config, indent=2))
    app, _ = load_app(config_path)
    with app.app_context():
        db.create_all()
        generation = Meter().start()
        created = generate_inventory(TENANT, computers=max(1, records // 20), installs=records, contracts=0, seed=7)
        generation.stop()
        # An inventory exported weekly was last changed days ago, not seconds before the first export.
        age_inventory(TENANT)
        change = SettingsChange(
            instance_url=sandbox_url,
            username="admin",
            use_custom_credentials=False,
            export_data_types=(DATA_TYPE,),
            token=refresh_token(sandbox_url),
        )
        save_settings(TENANT, change, Identity("1", "Bench", TENANT, frozenset()))
        batching = Meter().start()
        written, batches = write_batches(directory / "batches.jsonl")
        batching.stop()
        db.engine.dispose()
    return {
        "records": created[DATA_TYPE],
        "computers": created["hardware_inventory"],
        "generate_seconds": round(generation.wall, 3),
        "batch_file_records": written,
        "batches": batches,
        "batch_file_seconds": round(batching.wall, 3),
        "config": str(config_path),
    }


def mutate(directory: Path, change_fraction: float) -> dict[str, object]:
    from demo_portal.demo_data import mutate_inventory
    from itam_admin.db import db

    app, _ = load_app(directory / "config.json")
    with app.app_context():
        changes = mutate_inventory(TENANT, change_fraction=change_fraction, delete=0, data_types=(DATA_TYPE,))
        db.engine.dispose()
    entry = changes[DATA_TYPE]
    return {"changed": len(entry["changed"]), "deleted": len(entry["deleted"]), "added": len(entry["added"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dataset", description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    make = steps.add_parser("prepare")
    make.add_argument("--dir", required=True, type=Path)
    make.add_argument("--records", required=True, type=int)
    make.add_argument("--sandbox-url", required=True)
    make.add_argument("--redis-url", required=True)
    change = steps.add_parser("mutate")
    change.add_argument("--dir", required=True, type=Path)
    change.add_argument("--change-fraction", type=float, default=0.01)
    args = parser.parse_args(argv)
    if args.step == "prepare":
        emit(prepare(args.dir, args.records, args.sandbox_url, args.redis_url))
    else:
        emit(mutate(args.dir, args.change_fraction))
    return 0


if __name__ == "__main__":
    sys.exit(main())
