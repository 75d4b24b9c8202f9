"""Reading what ServiceNow's transform did with the import sets a run sent (or earlier runs left unconfirmed), and
settling the ledger from it: a record counts as held only once its import set finished and the row was written.

It never sends records, and a read that fails or cannot see every row leaves the records unconfirmed, never
confirmed. Only the exporter's main thread calls it (it touches the database).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Row

from itam_admin.exports.ledger import Ledger
from itam_admin.servicenow.client import ImportSetRunCounts, StagingRow, is_sys_id
from itam_admin.servicenow.errors import ServiceNowError

WRITTEN_STATES = ("inserted", "updated")
# The update set's hardware transform writes computers through IRE and then ignores the staging row (ServiceNow's
# "Applying IRE to Import Sets": `ignore = true` in onBefore), saying so in the row's comment.
IRE_WRITTEN = "Written through IRE"
# ServiceNow's comment on a row whose coalesce found the record already as sent (ServiceNow docs, "Web service import
# set mode": the row's Comment "usually contains ... 'No field values changed' when the status is 'ignored'").
UNCHANGED = "no field values changed"
UNFINISHED_STATES = ("pending", "")
# ServiceNow's Import Set Deleter removes import sets and their rows "created more than seven days ago" by default
# (ServiceNow docs, "Delete import sets"): after that their results can never be read, so the records are sent again.
GIVE_UP_AFTER = timedelta(days=7)
VALUES_PER_READ = 50  # staging rows per read of a rejected record's values (sys_ids in one query)


def usable_import_set_id(value: str) -> bool:
    """Whether an insertMultiple answer named an import set whose results can be read."""
    return is_sys_id(value)


def is_written(row: StagingRow, retirement: bool = False) -> bool:
    """Whether ServiceNow now holds this row's record as sent: inserted or updated; or ignored with a target record,
    with IRE's comment (IRE wrote it), with ServiceNow's "No field values changed" (coalesce found it as sent), or
    for a retirement (the update set ignores the retirement of an install ServiceNow never had). Any other ignored
    row, and every error or skipped one, is a record the transform did not write."""
    if row.state in WRITTEN_STATES:
        return True
    if row.state != "ignored":
        return False
    comment = row.comment.strip()
    return bool(row.target_sys_id) or comment.startswith(IRE_WRITTEN) or comment.lower() == UNCHANGED or retirement


def processed(counts: ImportSetRunCounts) -> int:
    return counts.inserts + counts.updates + counts.ignored + counts.skipped + counts.errors


@dataclass
class Settled:
    """One import set whose results were applied to the ledger."""

    pending: Row  # the first ledger.pending() row naming it (import_set_id, run_id, batch_number, ...)
    record_count: int
    rejected: list[StagingRow] = field(default_factory=list)
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # staging sys_id -> the record as staged
    gave_up: list[str] = field(default_factory=list)  # source ids of a set given up on (no results in time)

    @property
    def not_written(self) -> int:
        return len(self.rejected) + len(self.gave_up)


@dataclass
class Reading:
    """What one read of a data type's pending import sets found."""

    settled: list[Settled] = field(default_factory=list)
    results: dict[str, ImportSetRunCounts] = field(default_factory=dict)
    still_pending: list[Row] = field(default_factory=list)
    error: ServiceNowError | None = None
    hidden_rows: bool = False  # a finished import set showed fewer not-written rows than its counts say


def settle(client, ledger: Ledger, staging_table: str, record_fields: tuple[str, ...], now: datetime) -> Reading:
    """Read the results of the ledger's pending import sets once, without waiting, and apply the finished ones:
    rejected rows get the hash REJECTED, the rest of the set is held. Import sets older than GIVE_UP_AFTER that are
    still not settled have all their records sent again."""
    reading = Reading()
    by_id: dict[str, list[Row]] = defaultdict(list)
    for row in ledger.pending():
        by_id[row.import_set_id].append(row)
    if not by_id:
        return reading
    expected = {set_id: sum(row.record_count for row in rows) for set_id, rows in by_id.items()}
    try:
        reading.results = client.import_set_results(list(by_id))
    except ServiceNowError as error:
        reading.error = error
        results: dict[str, ImportSetRunCounts] = {}
    else:
        results = reading.results
    finished = {
        set_id: counts
        for set_id, counts in results.items()
        if set_id in by_id and processed(counts) >= expected[set_id]
    }
    # Import sets whose counts show rows that were neither inserted nor updated: their staging rows say which.
    to_read = [set_id for set_id, counts in finished.items() if counts.inserts + counts.updates < expected[set_id]]
    rows_by_set: dict[str, list[StagingRow]] = defaultdict(list)
    if to_read:
        try:
            for row in client.staging_rows(staging_table, to_read):
                rows_by_set[row.import_set_id].append(row)
        except ServiceNowError as error:
            reading.error = reading.error or error
            for set_id in to_read:
                finished.pop(set_id, None)
    settled_ids: list[str] = []
    for set_id, counts in finished.items():
        rows = rows_by_set.get(set_id, [])
        if set_id in to_read:
            if any(row.state in UNFINISHED_STATES for row in rows):
                continue  # still transforming after all
            if len(rows) < expected[set_id] - counts.inserts - counts.updates:
                reading.hidden_rows = True  # ACLs or a cleanup hide rows: which records failed cannot be known
                continue
        doubtful = [row.source_id for row in rows if row.state == "ignored" and not is_written(row)]
        retiring = ledger.retiring(set_id, doubtful) if doubtful else set()
        rejected = [row for row in rows if not is_written(row, row.source_id in retiring)]
        settled = Settled(by_id[set_id][0], expected[set_id], rejected)
        reading.settled.append(settled)
        settled_ids.append(set_id)
    _read_values(client, staging_table, record_fields, reading.settled)
    for settled in reading.settled:
        ledger.reject(settled.pending.import_set_id, [row.source_id for row in settled.rejected if row.source_id])
    ledger.confirm(settled_ids)
    ledger.settled(settled_ids)
    done = set(settled_ids)
    expired: list[str] = []
    for set_id, rows in by_id.items():
        if set_id in done:
            continue
        if now - rows[0].sent_at > GIVE_UP_AFTER:
            settled = Settled(rows[0], expected[set_id], gave_up=ledger.awaiting(set_id))
            reading.settled.append(settled)
            expired.append(set_id)
        else:
            reading.still_pending.extend(rows)
    if expired:
        ledger.reject_all(expired)
        ledger.settled(expired)
    return reading


def _read_values(client, staging_table: str, record_fields: tuple[str, ...], settled: list[Settled]) -> None:
    """The staged values of rejected rows, for the failed-records CSV; best effort (a row without them still names
    its source id and ServiceNow's comment)."""
    for item in settled:
        sys_ids = [row.sys_id for row in item.rejected if row.sys_id]
        for start in range(0, len(sys_ids), VALUES_PER_READ):
            chunk = sys_ids[start : start + VALUES_PER_READ]
            try:
                rows = client.staging_rows(
                    staging_table, [item.pending.import_set_id], (), fields=record_fields, sys_ids=chunk
                )
                item.values.update({row.sys_id: row.values for row in rows})
            except ServiceNowError:
                return
