"""Peer: the straightforward script a ServiceNow admin would write to load the same records, in a process of its own.

It reads the tenant's installed applications joined to their computers from the benchmark database with plain SQL
(sqlite3 or psycopg, no ORM), maps each row to the staging-table record with plain Python (the fields the exporter
sends, see itam_admin/records.py), and posts them to the Import Set API's insertMultiple, 200 a request, one request
after another, with one ``requests.Session`` and basic auth. No differential state, no retries, no bookkeeping, no
concurrency: what the exporter is asked to beat.

    python -m benchmarks.peer_script --database-url URL --sandbox-url URL

Prints one ``BENCH-RESULT {json}`` line: wall seconds, CPU seconds, peak RSS, records accepted, the database
server's CPU on PostgreSQL, and (from a second, untimed pass) the digest of the records it maps.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BATCH_SIZE,
    SANDBOX_USER,
    STAGING_TABLE,
    TENANT,
    Meter,
    current_rss_mb,
    database_kind,
    emit,
    libpq_url,
    peak_rss_mb,
    records_digest,
    sqlite_path,
)

# The join the exporter makes too: an install carries its computer's source id, name and serial number.
INSTALLS_SQL = """
SELECT a.source_id, c.source_id, c.name, c.serial_number, a.display_name, a.publisher, a.version, a.edition,
       a.install_date, a.install_location
FROM itam_installed_application a
JOIN itam_computer c ON c.id = a.computer_id AND c.tenant_id = a.tenant_id
WHERE a.tenant_id = {tenant}
ORDER BY a.source_id
"""


def connect(database_url: str) -> Any:
    """A DB-API connection to the benchmark database (sqlite3 for sqlite:///FILE, psycopg for PostgreSQL)."""
    if database_kind(database_url) == "sqlite":
        return sqlite3.connect(sqlite_path(database_url))
    import psycopg

    return psycopg.connect(libpq_url(database_url))


def read_installs(connection: Any, tenant: str, limit: int | None = None) -> Iterator[tuple]:
    """The tenant's installs as plain tuples, streamed (sqlite3 cursors stream; on PostgreSQL a server-side cursor
    fetches 2,000 rows at a time, so memory stays flat)."""
    suffix = f" LIMIT {int(limit)}" if limit is not None else ""
    if isinstance(connection, sqlite3.Connection):
        yield from connection.execute(INSTALLS_SQL.format(tenant="?") + suffix, (tenant,))
        return
    with connection.cursor(name="installs") as cursor:
        cursor.itersize = 2000
        cursor.execute(INSTALLS_SQL.format(tenant="%s") + suffix, (tenant,))
        yield from cursor


def text(value: Any) -> str:
    """ServiceNow takes strings: None is empty; dates (sqlite3 gives text, psycopg gives date) print as ISO."""
    return "" if value is None else str(value)


def to_record(row: tuple, tenant: str = TENANT) -> dict[str, str]:
    """One install as the staging table's record; source ids scoped to the tenant, as the exporter sends them."""
    source_id, computer_id, computer_name, serial, name, publisher, version, edition, installed, location = row
    return {
        "u_source_id": f"{tenant}:{source_id}",
        "u_computer_source_id": f"{tenant}:{computer_id}" if computer_id is not None else "",
        "u_computer_name": text(computer_name),
        "u_computer_serial_number": text(serial),
        "u_display_name": text(name),
        "u_publisher": text(publisher),
        "u_version": text(version),
        "u_edition": text(edition),
        "u_install_date": text(installed),
        "u_install_location": text(location),
        "u_operational_status": "operational",
    }


def send(database_url: str, sandbox_url: str) -> dict[str, object]:
    from benchmarks.dbcpu import not_measured, sampler

    url = f"{sandbox_url}/api/now/import/{STAGING_TABLE}/insertMultiple"
    totals = {"records": 0, "batches": 0, "failed_batches": 0}
    errors: list[str] = []
    database_cpu = sampler(database_url)
    rss_before = current_rss_mb()
    if database_cpu is not None:
        database_cpu.start()
    meter = Meter().start()

    # ---- the script itself ----
    connection = connect(database_url)
    session = requests.Session()
    session.auth = SANDBOX_USER
    session.headers["Accept"] = "application/json"

    def post(batch: list[dict[str, str]]) -> None:
        answer = session.post(url, json={"records": batch}, timeout=120)
        if 200 <= answer.status_code < 300:
            totals["records"] += len(batch)
            totals["batches"] += 1
        else:
            totals["failed_batches"] += 1
            errors.append(f"HTTP {answer.status_code}: {answer.text[:200]}")

    batch: list[dict[str, str]] = []
    for row in read_installs(connection, TENANT):
        batch.append(to_record(row))
        if len(batch) == BATCH_SIZE:
            post(batch)
            batch = []
    if batch:
        post(batch)
    # ---- end of the script ----

    meter.stop()
    db_cpu = database_cpu.stop() if database_cpu is not None else not_measured(database_url)  # connection still open
    peak = peak_rss_mb()
    session.close()
    connection.close()
    if database_cpu is not None:
        database_cpu.close()
    return {
        "wall_seconds": meter.wall,
        "cpu_seconds": meter.cpu,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
        "sent": totals["records"],
        "batches": totals["batches"],
        "failed_batches": totals["failed_batches"],
        "errors": errors[:5],
        "requests_in_flight": 1,
        **db_cpu,
        "records_digest": mapped_digest(database_url),
    }


def mapped_digest(database_url: str, limit: int | None = None) -> str:
    """The digest of the records this module maps (an untimed second pass), to compare with the exporter's."""
    connection = connect(database_url)
    try:
        return records_digest(to_record(row) for row in read_installs(connection, TENANT, limit))
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer_script")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--sandbox-url", required=True)
    args = parser.parse_args(argv)
    emit(send(args.database_url, args.sandbox_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
