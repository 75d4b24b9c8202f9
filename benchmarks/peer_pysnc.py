"""Peer: ServiceNow's own Python client, pysnc, used the way its users insert records, in a process of its own.

It reads the same rows with the same plain SQL and mapping as ``benchmarks.peer_script`` (the first ``--sample``
installs in source id order: one request per record is slow, so it runs on a sample and reports its rate per record),
then for each record::

    gr = client.GlideRecord("u_itam_installed_applications")
    gr.initialize()
    gr.set_value(field, value)   # every field
    gr.insert()                  # one Table API POST /api/now/table/<staging table>

In ServiceNow a Table API insert into an import set (staging) table creates the row and runs its transform at once,
as a web service import does. pysnc refuses http:// instances, so it talks to a second sandbox process serving https
(``--ca`` is the certificate to trust).

``--api`` says how records go in: ``table`` (``gr.insert()`` as above), ``import`` (the same GlideRecord built, then
its ``serialize()`` POSTed through pysnc's own session, auth and retry adapter to the Import Set API's single-record
endpoint ``POST /api/now/import/<staging table>``, which ServiceNow documents as inserting one row and transforming
it synchronously), or ``auto`` (``table``; when the instance answers the first insert with 405 "Method not
Supported", ``import`` from then on). The result says which one was used (``api``).

    python -m benchmarks.peer_pysnc --database-url URL --sandbox-url https://... --ca CERT [--sample 5000]

Prints one ``BENCH-RESULT {json}`` line like the other workers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pysnc

from benchmarks.common import SANDBOX_USER, STAGING_TABLE, TENANT, Meter, current_rss_mb, emit, peak_rss_mb
from benchmarks.peer_script import connect, mapped_digest, read_installs, to_record

TABLE, IMPORT = "table", "import"


def not_supported(error: Exception) -> bool:
    """pysnc's error for ServiceNow's answer to a method a REST resource does not have (HTTP 405)."""
    return "Method not Supported" in str(error)


def send(database_url: str, sandbox_url: str, ca: str | None, sample: int, api: str) -> dict[str, object]:
    from benchmarks.dbcpu import not_measured, sampler

    errors: list[str] = []
    sent = failed = 0
    used = IMPORT if api == IMPORT else TABLE
    database_cpu = sampler(database_url)
    rss_before = current_rss_mb()
    if database_cpu is not None:
        database_cpu.start()
    meter = Meter().start()

    connection = connect(database_url)
    client = pysnc.ServiceNowClient(sandbox_url, SANDBOX_USER, verify=ca)
    import_url = f"{client.instance}/api/now/import/{STAGING_TABLE}"
    gr = client.GlideRecord(STAGING_TABLE)

    def insert_through_import_set_api() -> bool:
        answer: Any = client.session.post(import_url, json=gr.serialize(), timeout=120)
        if answer.status_code == 201:
            return True
        errors.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
        return False

    for row in read_installs(connection, TENANT, sample):
        gr.initialize()
        for field, value in to_record(row).items():
            gr.set_value(field, value)
        if used == TABLE:
            try:
                ok = gr.insert() is not None
            except (pysnc.exceptions.RequestException, pysnc.exceptions.InsertException) as error:
                if api == "auto" and not sent and not failed and not_supported(error):
                    used = IMPORT
                    ok = insert_through_import_set_api()
                else:
                    errors.append(str(error)[:200])
                    ok = False
        else:
            ok = insert_through_import_set_api()
        sent, failed = sent + ok, failed + (not ok)

    meter.stop()
    db_cpu = database_cpu.stop() if database_cpu is not None else not_measured(database_url)
    peak = peak_rss_mb()
    connection.close()
    client.session.close()
    if database_cpu is not None:
        database_cpu.close()
    return {
        "wall_seconds": meter.wall,
        "cpu_seconds": meter.cpu,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
        "sent": sent,
        "failed": failed,
        "errors": errors[:5],
        "api": used,
        "sample": sample,
        "requests_in_flight": 1,
        **db_cpu,
        "records_digest": mapped_digest(database_url, sample),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer_pysnc")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--sandbox-url", required=True, help="an https:// instance (pysnc refuses http)")
    parser.add_argument("--ca", help="the certificate to trust (the https sandbox's own)")
    parser.add_argument("--sample", type=int, default=5000, help="records to insert, one request each")
    parser.add_argument("--api", choices=("auto", TABLE, IMPORT), default="auto")
    args = parser.parse_args(argv)
    emit(send(args.database_url, args.sandbox_url, args.ca, args.sample, args.api))
    return 0


if __name__ == "__main__":
    sys.exit(main())
