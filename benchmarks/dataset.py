"""Dataset steps of the benchmark, each run in its own process: ``prepare`` (generate one tenant's installed
applications into an empty database, save ServiceNow settings pointing at the sandbox, write the bare client's
pre-built JSON batches and the computers the sandbox is to hold) and ``mutate`` (change a fraction of the installs,
for the differential export).

    python -m benchmarks.dataset prepare --dir D --records N --sandbox-url URL --redis-url URL
        [--database-url sqlite:///D/itam.sqlite3 | postgresql+psycopg://...] [--peer-sample N]
    python -m benchmarks.dataset mutate --dir D --change-fraction 0.01

The database at ``--database-url`` must be empty (a SQLite file there is replaced; a PostgreSQL database is the
orchestrator's to create and drop). ``prepare`` also prints the digest of the records the exporter's own code maps
(all of them, and the first ``--peer-sample`` in source id order), so the peers can show they sent the same records.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BATCH_SIZE,
    CLIENT_ID,
    CLIENT_SECRET,
    DATA_TYPE,
    TENANT,
    Meter,
    RecordsDigest,
    database_kind,
    emit,
    refresh_token,
    sqlite_path,
)
from benchmarks.portal_app import app_env, load_app


def write_batches(path: Path, sample: int = 0) -> dict[str, object]:
    """The same mapped records the exporter sends (planner.encode of the source's records), in batches of 200: one
    `{"records":[...]}` body a line. Returns the records and batches written and the records' digests (all of them,
    and the first ``sample``)."""
    from itam_admin.exports.planner import encode
    from itam_admin.inventory.source import SqlInventorySource

    records = batches = 0
    everything, first = RecordsDigest(), RecordsDigest()
    chunk: list[bytes] = []
    with path.open("wb") as out:
        for record in SqlInventorySource().iter_records(TENANT, DATA_TYPE):
            everything.add(record)
            if first.count < sample:
                first.add(record)
            chunk.append(encode(record))
            if len(chunk) == BATCH_SIZE:
                out.write(b'{"records":[' + b",".join(chunk) + b"]}\n")
                records, batches, chunk = records + len(chunk), batches + 1, []
        if chunk:
            out.write(b'{"records":[' + b",".join(chunk) + b"]}\n")
            records, batches = records + len(chunk), batches + 1
    return {"records": records, "batches": batches, "digest": everything.text(), "sample_digest": first.text()}


def write_computers(path: Path) -> int:
    """The tenant's computers as ServiceNow would hold them had the hardware inventory been exported before (scoped
    source id, name, serial number): one JSON list, which the orchestrator puts into the sandbox before every step
    so that the installs' transforms find their computers (otherwise every row is rejected, and the next export
    rightly sends the rejected rows again, which would swamp the differential figure)."""
    from sqlalchemy import select

    from itam_admin.db import db
    from itam_admin.inventory.models import Computer
    from itam_admin.records import scoped_source_id

    query = select(Computer.source_id, Computer.name, Computer.serial_number).where(Computer.tenant_id == TENANT)
    computers = []
    for source_id, name, serial_number in db.session.execute(query):
        computer = {"u_source_id": scoped_source_id(TENANT, source_id), "name": name}
        if serial_number:
            computer["serial_number"] = serial_number
        computers.append(computer)
    path.write_text(json.dumps(computers))
    return len(computers)


def give_statistics(database_url: str) -> None:
    """On PostgreSQL, ANALYZE the database (in the app's context): what autovacuum gives a database in service, so
    the exporter's queries are planned as they would be there. SQLite plans without statistics."""
    from sqlalchemy import text

    from itam_admin.db import db

    if database_kind(database_url) == "postgresql":
        db.session.execute(text("ANALYZE"))
        db.session.commit()


def prepare(
    directory: Path, records: int, sandbox_url: str, redis_url: str, database_url: str, sample: int = 0
) -> dict[str, object]:
    from cryptography.fernet import Fernet

    from demo_portal.demo_data import age_inventory, generate_inventory
    from itam_admin.db import db
    from itam_admin.identity import Identity
    from itam_admin.settings.store import save_settings
    from itam_admin.settings.values import SettingsChange

    directory.mkdir(parents=True, exist_ok=True)
    if database_kind(database_url) == "sqlite":
        Path(sqlite_path(database_url)).unlink(missing_ok=True)
    config = {
        "env": app_env(database_url, redis_url, Fernet.generate_key().decode(), CLIENT_ID, CLIENT_SECRET),
        "database_url": database_url,
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
        # A database in service has planner statistics; one loaded a second ago has none.
        give_statistics(database_url)
        change = SettingsChange(
            instance_url=sandbox_url,
            username="admin",
            use_custom_credentials=False,
            export_data_types=(DATA_TYPE,),
            token=refresh_token(sandbox_url),
        )
        save_settings(TENANT, change, Identity("1", "Bench", TENANT, frozenset()))
        batching = Meter().start()
        written = write_batches(directory / "batches.jsonl", sample)
        batching.stop()
        write_computers(directory / "computers.json")
        db.engine.dispose()
    return {
        "records": created[DATA_TYPE],
        "computers": created["hardware_inventory"],
        "database": database_kind(database_url),
        "generate_seconds": round(generation.wall, 3),
        "batch_file_records": written["records"],
        "batches": written["batches"],
        "batch_file_seconds": round(batching.wall, 3),
        "records_digest": written["digest"],
        "sample_digest": written["sample_digest"],
        "config": str(config_path),
        "computers_file": str(directory / "computers.json"),
    }


def copy_config(directory: Path, database_url: str, label: str) -> Path:
    """Another config.json for the same dataset in another database (a copy of this one's): `config-LABEL.json`."""
    config = json.loads((directory / "config.json").read_text())
    config["env"]["DATABASE_URL"] = config["database_url"] = database_url
    path = directory / f"config-{label}.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def mutate(config_path: Path, change_fraction: float) -> dict[str, object]:
    from demo_portal.demo_data import mutate_inventory
    from itam_admin.db import db

    app, config = load_app(config_path)
    with app.app_context():
        changes = mutate_inventory(TENANT, change_fraction=change_fraction, delete=0, data_types=(DATA_TYPE,))
        # The week between two exports gives autovacuum time to analyze what the full export wrote (a million ledger
        # rows here, a minute ago); planned on an empty table's statistics, the differential's ledger lookups read
        # every row (0.2 s a chunk of 2,000 ids instead of 3 ms).
        give_statistics(config["database_url"])
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
    make.add_argument("--database-url", help="an empty database [default: sqlite:///DIR/itam.sqlite3]")
    make.add_argument("--peer-sample", type=int, default=0, help="also digest the first N records")
    change = steps.add_parser("mutate")
    change.add_argument("--config", required=True, type=Path, help="the dataset's config.json (or its copy's)")
    change.add_argument("--change-fraction", type=float, default=0.01)
    args = parser.parse_args(argv)
    if args.step == "prepare":
        database_url = args.database_url or f"sqlite:///{args.dir.resolve() / 'itam.sqlite3'}"
        emit(prepare(args.dir, args.records, args.sandbox_url, args.redis_url, database_url, args.peer_sample))
    else:
        emit(mutate(args.config, args.change_fraction))
    return 0


if __name__ == "__main__":
    sys.exit(main())
