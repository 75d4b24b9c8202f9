"""The records of a run's failed batches and of rows ServiceNow's transform did not write, as CSV with what
ServiceNow said of each, for the tenant admin to fix; streamed row by row. Cells never start a spreadsheet formula."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from itam_admin.exports.models import ExportRun
from itam_admin.records import FIELDS

# Keys the exporter adds to a record its transform did not write (the staging row's sys_import_state and comment).
STATE, COMMENT = "sys_import_state", "sys_import_state_comment"


def _cell(value: str) -> str:
    # Spreadsheet formula injection: a cell starting with = + - @ is shown as text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def failed_records_csv_lines(run: ExportRun) -> Iterator[str]:
    """CSV lines of every failed record; the batches are read now, so the lines can stream after the request."""
    failures = [(f.data_type, f.batch_number, f.message, f.detail, f.records_json) for f in run.failed_batches]
    return _lines(failures)


def _lines(failures: list[tuple[str, int, str, str | None, str]]) -> Iterator[str]:
    """One row per record: our message, and what ServiceNow said of it. For a record its transform did not write
    that is the staging row's state and comment; for a batch ServiceNow refused, its message for the batch."""
    fields = sorted({f for fields in FIELDS.values() for f in fields})
    columns = ["data_type", "batch_number", "error", "import_state", "servicenow_comment", *fields]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for data_type, batch_number, message, detail, records_json in failures:
        for record in json.loads(records_json).get("records", []):
            row = {"data_type": data_type, "batch_number": str(batch_number), "error": message}
            row.update(record)
            row["import_state"] = record.get(STATE, "")
            row["servicenow_comment"] = record.get(COMMENT, detail or "")
            writer.writerow([_cell(str(row.get(column, ""))) for column in columns])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()
