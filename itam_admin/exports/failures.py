"""The records of a run's failed batches as CSV, for the tenant admin to fix and resend; streamed row by row."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from itam_admin.exports.models import ExportRun
from itam_admin.records import FIELDS


def _cell(value: str) -> str:
    # Spreadsheet formula injection: a cell starting with = + - @ is shown as text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def failed_records_csv_lines(run: ExportRun) -> Iterator[str]:
    """CSV lines of every failed record; the batches are read now, so the lines can stream after the request."""
    failures = [(f.data_type, f.batch_number, f.message, f.records_json) for f in run.failed_batches]
    return _lines(failures)


def _lines(failures: list[tuple[str, int, str, str]]) -> Iterator[str]:
    columns = ["data_type", "batch_number", "error"] + sorted({f for fields in FIELDS.values() for f in fields})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for data_type, batch_number, message, records_json in failures:
        for record in json.loads(records_json).get("records", []):
            row = {"data_type": data_type, "batch_number": str(batch_number), "error": message}
            row.update(record)
            writer.writerow([_cell(row.get(column, "")) for column in columns])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()
