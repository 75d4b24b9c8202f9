"""The exporter: runs one export run by streaming each chosen data type's plan, batching it, posting batches to the
Import Set API with several requests in flight, reading back what ServiceNow's transform did, and recording
progress, the ledger and the outcome.

Only the main thread touches the database; sender threads only talk to ServiceNow. Any fault ends in a recorded
outcome (never a run left `running`); what ServiceNow accepted is remembered even when the run fails, as awaiting
confirmation, and a run never says `succeeded` unless ServiceNow's transform wrote every record it sent.
"""

from __future__ import annotations

import gc
import logging
import math
import sys
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from itam_admin.datatypes import DATA_TYPE_NAMES
from itam_admin.datatypes import data_type as registry_entry
from itam_admin.db import db, utcnow
from itam_admin.exports import confirm, planner, runs
from itam_admin.exports.failures import COMMENT, STATE
from itam_admin.exports.ledger import Ledger
from itam_admin.exports.models import ExportBatchFailure, ExportRun, ExportRunDataType
from itam_admin.inventory.source import InventorySource, SqlInventorySource
from itam_admin.plugin import current_plugin
from itam_admin.servicenow import errors
from itam_admin.servicenow.app_check import require_app
from itam_admin.servicenow.client import ConnectionCheck, ImportSetRunCounts
from itam_admin.servicenow.concurrency import AdaptiveConcurrency
from itam_admin.servicenow.errors import ErrorKind, ServiceNowError
from itam_admin.settings import connection
from itam_admin.tenant_client import client_for

log = logging.getLogger("itam_admin.exports")
PROGRESS_EVERY_SECONDS = 1.0
LEDGER_ROWS_PER_WRITE = 5000  # at most this many accepted records wait for their ledger write (and in memory)
# The interpreter's switch interval and the cyclic garbage collector's thresholds while exports run (ProcessSettings).
SENDER_SWITCH_INTERVAL = 0.0005  # seconds
EXPORT_GC_THRESHOLDS = (100_000, 50, 100)
COUNTS = (
    "total",
    "sent",
    "failed",
    "new",
    "changed",
    "retired",
    "unchanged",
    "confirmed",
    "rejected",
    "unconfirmed",
    "earlier_confirmed",
    "earlier_rejected",
    "earlier_unconfirmed",
    "earlier_due",
)
FIRST_READ_BACK_WAIT = 0.5  # seconds; then 1, 2, 4... within read_back_wait_seconds in all
REJECTED_KIND = "rejected_by_transform"
# Data types whose records refer to another's: their import sets are transformed after that one's (installs name
# their computer), so the run waits for those import sets and sends with ServiceNow's run_after.
TRANSFORMED_AFTER = {"installed_applications": "hardware_inventory"}
# How long installs wait at least for their computers' import sets, whatever ITAM_EXPORT_READ_BACK_WAIT_SECONDS says:
# run_after names only one import set, and ServiceNow transforms the others in any order.
DEPENDENCY_WAIT_SECONDS = 60.0


class RunStopped(Exception):
    """A fault that ends the whole run (token refused, host unknown, TLS, 403...)."""

    def __init__(self, error: ServiceNowError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class Batch:
    data_type: str
    number: int
    items: list[planner.Planned] = field(default_factory=list)


@dataclass
class BatchOutcome:
    batch: Batch
    accepted: list[planner.Planned] = field(default_factory=list)
    import_set_ids: list[str] = field(default_factory=list)
    failed: list[tuple[list[planner.Planned], ServiceNowError]] = field(default_factory=list)
    # Accepted records per import set, in the order of import_set_ids (a split batch went in several); empty: all
    # of `accepted` went in the one import set.
    set_sizes: list[int] = field(default_factory=list)

    def pieces(self) -> list[tuple[str, list[planner.Planned]]]:
        """(import set id, the records that went in it) for each import set ServiceNow created."""
        if not self.set_sizes:
            return [(self.import_set_ids[0], self.accepted)] if self.accepted and self.import_set_ids else []
        pieces, start = [], 0
        for set_id, size in zip(self.import_set_ids, self.set_sizes, strict=True):
            pieces.append((set_id, self.accepted[start : start + size]))
            start += size
        return pieces


def body_of(items: list[planner.Planned]) -> bytes:
    return planner.encode_batch([item.record for item in items])


def send_batch(client, staging_table: str, batch: Batch, max_bytes: int, run_after: str | None = None) -> BatchOutcome:
    """Post a batch; one over max_bytes, or answered 413, is split in halves (down to single records). Runs in a
    sender thread, so encoding the body happens there too. `run_after`: the import set ServiceNow transforms these
    after."""
    outcome = BatchOutcome(batch)
    pending = [batch.items]
    while pending:
        items = pending.pop()
        body = body_of(items)
        if len(body) > max_bytes and len(items) > 1:
            half = len(items) // 2
            pending.extend([items[half:], items[:half]])
            continue
        try:
            if run_after:
                ids = client.insert_multiple(staging_table, body, run_after=run_after)
            else:
                ids = client.insert_multiple(staging_table, body)
        except ServiceNowError as error:
            if error.stops_run:
                raise RunStopped(error) from None
            if error.kind == ErrorKind.PAYLOAD_TOO_LARGE and len(items) > 1:
                half = len(items) // 2
                pending.extend([items[half:], items[:half]])
                continue
            outcome.failed.append((items, error))
            continue
        if not confirm.usable_import_set_id(ids.import_set_id):
            # The client already refuses such an answer; a stand-in client may not: never a record nobody can confirm.
            outcome.failed.append((items, errors.no_import_set_id(client.host, staging_table, None)))
            continue
        outcome.accepted.extend(items)
        outcome.import_set_ids.append(ids.import_set_id)
        outcome.set_sizes.append(len(items))
    return outcome


class Exporter:
    """One run's sending loop; see the module docstring."""

    def __init__(self, run: ExportRun, client, source: InventorySource, config) -> None:
        self.run = run
        self.client = client
        self.source = source
        self.config = config
        self.counts = {dt.data_type: dt for dt in run.data_types}
        # Counted here per record and copied to the run's rows at each progress save: ORM attributes cost too much
        # to touch per record.
        # Counts start as stored: totals as counted when the run was queued (so data types not begun yet do not read
        # "0 of 0"), and what a run resumed after a rate-limit pause had sent and confirmed before it (it plans again,
        # so its unchanged records are counted afresh).
        self.tally = {dt.data_type: {name: getattr(dt, name) or 0 for name in COUNTS} for dt in run.data_types}
        for tally in self.tally.values():
            tally["unchanged"] = 0
        self.last_progress = 0.0
        self.batch_number = 0
        self.import_set_ids: dict[str, list[str]] = {
            dt.data_type: list(dt.import_set_ids or []) for dt in run.data_types
        }
        self.ledgers = {data_type: Ledger(run.tenant_id, run.instance_url, data_type) for data_type in self.counts}
        # Ledger rows of accepted records not written yet (source id, content hash, import set id), and their import
        # sets (import set id, run id, batch number, record count, sent at): see remember().
        self.unwritten: dict[str, list[tuple[str, str, str]]] = {data_type: [] for data_type in self.counts}
        self.unwritten_sets: dict[str, list[tuple[str, int, int, int, datetime]]] = {
            data_type: [] for data_type in self.counts
        }
        self.written: Counter[str] = Counter()  # ledger rows written per data type
        # Read back: ServiceNow's counts of this run's import sets, when each data type's plan began, the last error
        # of a read, and data types where a rejection found after planning means the run is not complete.
        self.results: dict[str, dict[str, ImportSetRunCounts]] = {data_type: {} for data_type in self.counts}
        self.started: dict[str, object] = {}
        self.read_error: dict[str, ServiceNowError | None] = dict.fromkeys(self.counts)
        self.hidden_rows: dict[str, bool] = dict.fromkeys(self.counts, False)
        self.incomplete: dict[str, bool] = dict.fromkeys(self.counts, False)
        # Requests in flight adapt to the instance, up to ITAM_EXPORT_REQUESTS_IN_FLIGHT (servicenow/concurrency.py).
        self.pacer = AdaptiveConcurrency(config.requests_in_flight)
        if client is not None:
            client.pacer = self.pacer

    def export(self) -> None:
        # Import sets earlier runs left unconfirmed are settled first, so their rejected records go in this plan and
        # the rest is not sent again.
        for data_type in DATA_TYPE_NAMES:
            if data_type in self.counts:
                self.settle(data_type)
        for data_type in DATA_TYPE_NAMES:
            if data_type in self.counts:
                self.export_data_type(data_type)

    def export_data_type(self, data_type: str) -> None:
        counts = self.counts[data_type]
        run_after = None
        if (earlier := TRANSFORMED_AFTER.get(data_type)) in self.counts:
            # ServiceNow transforms asynchronous import sets in any order unless told (Import Set API docs): wait
            # (bounded) until the computers' import sets are done, and name the last one as run_after besides.
            self.wait_for([earlier], at_least=DEPENDENCY_WAIT_SECONDS)
            awaited = [row.import_set_id for row in self.ledgers[earlier].pending()]
            run_after = (self.import_set_ids[earlier] or awaited or [None])[-1]
        self.started[data_type] = utcnow()
        plan = planner.Plan(self.run.tenant_id, self.run.instance_url, data_type, self.source, self.run.full)
        self.tally[data_type]["total"] = plan.count()
        self.save_progress(force=True)
        staging_table = registry_entry(data_type).staging_table
        in_flight = self.config.requests_in_flight
        pending: set[Future] = set()
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="itam-send") as pool:
            try:
                for batch in self.batches(data_type, plan):
                    # One batch waiting per sender besides the one on the wire: a sender that finishes starts its
                    # next request at once instead of waiting for this thread to record and plan.
                    while len(pending) >= 2 * in_flight:
                        self.collect(pending)
                    pending.add(
                        pool.submit(
                            send_batch, self.client, staging_table, batch, self.config.max_batch_bytes, run_after
                        )
                    )
                while pending:
                    self.collect(pending)
            except RunStopped:
                for future in pending:
                    future.cancel()
                self.drain(pending)
                raise
        # Stored once per data type, not at every progress save: a big export has thousands of import sets.
        counts.import_set_ids = list(self.import_set_ids[data_type])
        self.save_progress(force=True)
        Ledger.keep_statistics(self.written[data_type])

    def batches(self, data_type: str, plan: planner.Plan):
        """Group what the plan says to send into batches of at most batch_size records (the sender splits one that
        encodes to more than max_batch_bytes)."""
        tally = self.tally[data_type]
        limit = self.config.batch_size
        batch = Batch(data_type, self.next_batch_number())
        for planned in plan:
            action = planned.action
            if action == planner.UNCHANGED:
                tally["unchanged"] += 1
                if tally["unchanged"] % 1000 == 0:
                    self.save_progress()
                continue
            if action == planner.RETIRED:
                tally["total"] += 1  # the source's count does not include records deleted from ITAM
            batch.items.append(planned)
            if len(batch.items) >= limit:
                yield batch
                batch = Batch(data_type, self.next_batch_number())
        if batch.items:
            yield batch
        tally["unchanged"] += plan.skipped_unchanged

    def next_batch_number(self) -> int:
        self.batch_number += 1
        return self.batch_number

    def collect(self, pending: set[Future]) -> None:
        """Record the batches that finished and take them out of `pending`; a stop is raised only after every
        finished batch is recorded, so `pending` then holds exactly the batches still unrecorded."""
        done, _ = wait(pending, timeout=5, return_when=FIRST_COMPLETED)
        pending.difference_update(done)
        stopped: RunStopped | None = None
        for future in done:
            try:
                self.record(future.result())
            except RunStopped as error:
                stopped = stopped or error
        self.save_progress(force=not done)
        if stopped is not None:
            raise stopped

    def drain(self, pending: set[Future]) -> None:
        """After a stop: wait for batches already on the wire and remember what ServiceNow accepted."""
        for future in pending:
            if future.cancelled():
                continue
            try:
                self.record(future.result())
            except RunStopped:
                pass
        self.save_progress(force=True)

    def record(self, outcome: BatchOutcome) -> None:
        tally = self.tally[outcome.batch.data_type]
        if outcome.accepted:
            self.remember(outcome)
            tally["sent"] += len(outcome.accepted)
            for action, count in Counter(item.action for item in outcome.accepted).items():
                tally[action] += count  # new, changed, retired
            self.import_set_ids[outcome.batch.data_type].extend(outcome.import_set_ids)
        for items, error in outcome.failed:
            tally["failed"] += len(items)
            db.session.add(
                ExportBatchFailure(
                    run_id=self.run.id,
                    data_type=outcome.batch.data_type,
                    batch_number=outcome.batch.number,
                    record_count=len(items),
                    status_code=error.status,
                    error_kind=str(error.kind),
                    message=error.message,
                    detail=error.detail,
                    records_json=body_of(items).decode(),
                )
            )

    def remember(self, outcome: BatchOutcome) -> None:
        """Record what ServiceNow accepted as awaiting its transform: the planner does not send it again meanwhile,
        and read_back confirms or rejects it. The ledger rows and their import sets are held together and written by
        write_ledger, for many import sets at once."""
        data_type = outcome.batch.data_type
        unwritten, sets, now = self.unwritten[data_type], self.unwritten_sets[data_type], utcnow()
        for import_set_id, items in outcome.pieces():
            unwritten.extend([(item.source_id, item.content_hash, import_set_id) for item in items])
            sets.append((import_set_id, self.run.id, outcome.batch.number, len(items), now))
        if len(unwritten) >= LEDGER_ROWS_PER_WRITE:
            self.write_ledger()

    def write_ledger(self) -> None:
        """Write the ledger rows and import sets remember() holds: once LEDGER_ROWS_PER_WRITE rows wait (remember),
        before every commit (save_progress) and before every read of the import sets awaited (settle)."""
        for data_type, unwritten in self.unwritten.items():
            ledger, sets = self.ledgers[data_type], self.unwritten_sets[data_type]
            ledger.sent(unwritten)
            ledger.add_pending_sets(sets)
            self.written[data_type] += len(unwritten)
            unwritten.clear()
            sets.clear()

    def save_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_progress < PROGRESS_EVERY_SECONDS:
            return
        self.last_progress = now
        for data_type, tally in self.tally.items():
            row = self.counts[data_type]
            for name, value in tally.items():
                setattr(row, name, value)
        runs.heartbeat(self.run)
        self.write_ledger()  # never a pending import set committed without its records
        db.session.commit()

    # ---- what ServiceNow's transform did ------------------------------------------------------------------------

    def read_back(self) -> None:
        """Wait (bounded) for ServiceNow to transform the import sets still awaited, confirm or reject their records,
        then count what is still unconfirmed and set the watermark of each data type that is complete and confirmed.
        A read that fails leaves records unconfirmed; it never fails the run."""
        self.wait_for([data_type for data_type in DATA_TYPE_NAMES if data_type in self.counts])
        for data_type, tally in self.tally.items():
            pending = self.ledgers[data_type].pending()
            tally["unconfirmed"] = sum(row.record_count for row in pending if row.run_id == self.run.id)
            tally["earlier_unconfirmed"] = sum(row.record_count for row in pending if row.run_id != self.run.id)
            self.servicenow_counts(data_type)
            row = self.counts[data_type]
            row.read_back_error = self.read_back_problem(data_type) if pending else None
            complete = not pending and tally["failed"] == 0 and not self.incomplete[data_type]
            if data_type in self.started and complete:
                self.ledgers[data_type].set_watermark(self.started[data_type] - self.config.differential_margin)
        self.save_progress(force=True)

    def wait_for(self, data_types: list[str], at_least: float = 0.0) -> None:
        """Read the awaited import sets of these data types until none is left, a read fails, or
        read_back_wait_seconds (or `at_least`, when longer) passed (waiting 0.5, 1, 2... s between reads)."""
        deadline = time.monotonic() + max(self.config.read_back_wait_seconds, at_least)
        wait_seconds = FIRST_READ_BACK_WAIT
        left = list(data_types)
        while True:
            left = [
                data_type for data_type in left if self.settle(data_type) and self.read_back_problem(data_type) is None
            ]
            remaining = deadline - time.monotonic()
            if not left or remaining <= 0:
                return
            time.sleep(min(wait_seconds, remaining))
            wait_seconds *= 2

    def settle(self, data_type: str) -> int:
        """One read of the data type's awaited import sets, applied to the ledger and the counts; returns how many
        import sets are still awaited."""
        entry = registry_entry(data_type)
        self.write_ledger()  # the import sets it reads include every one accepted so far
        reading = confirm.settle(self.client, self.ledgers[data_type], entry.staging_table, entry.field_names, utcnow())
        own = set(self.import_set_ids[data_type])
        self.results[data_type].update({set_id: c for set_id, c in reading.results.items() if set_id in own})
        self.read_error[data_type] = reading.error
        self.hidden_rows[data_type] = reading.hidden_rows
        tally = self.tally[data_type]
        for settled in reading.settled:
            written, not_written = settled.record_count - settled.not_written, settled.not_written
            if settled.pending.run_id == self.run.id:
                tally["confirmed"] += written
                tally["rejected"] += not_written
                tally["failed"] += not_written
            else:
                tally["earlier_confirmed"] += written
                tally["earlier_rejected"] += not_written
                if data_type in self.started:
                    tally["earlier_due"] += not_written
                self.count_on_earlier_run(data_type, settled, written)
            if not_written:
                # A rejection found after this data type was planned is sent again only by the next export.
                self.incomplete[data_type] = self.incomplete[data_type] or data_type in self.started
                db.session.add(self.rejection(data_type, settled))
        if reading.error is not None:
            log.info("could not read import set results from %s: %s", self.client.host, reading.error.kind)
        self.save_progress(force=True)  # commits; a heartbeat while we wait
        return len({row.import_set_id for row in reading.still_pending})

    def read_back_problem(self, data_type: str) -> str | None:
        """Why the awaited import sets of a data type could not be confirmed, when it was not just time."""
        error = self.read_error[data_type]
        if error is not None:
            return error.message
        if self.hidden_rows[data_type]:
            return (
                f"ServiceNow at {self.client.host} did not show {self.run_user()} every staging row of a finished "
                f"import set in {registry_entry(data_type).staging_table}, so which records its transform rejected "
                "is not known. Ask your ServiceNow admin to let this user read the ITAM staging tables."
            )
        return None

    def run_user(self) -> str:
        creds = getattr(self.client, "creds", None)
        return getattr(creds, "username", "") or "the integration user"

    def count_on_earlier_run(self, data_type: str, settled: confirm.Settled, written: int) -> None:
        """The run that sent an import set learns what became of it, so its counts and failed records end true."""
        row = db.session.scalar(
            select(ExportRunDataType).where(
                ExportRunDataType.run_id == settled.pending.run_id, ExportRunDataType.data_type == data_type
            )
        )
        if row is None:
            return
        row.confirmed = (row.confirmed or 0) + written
        row.rejected = (row.rejected or 0) + settled.not_written
        row.failed = (row.failed or 0) + settled.not_written
        row.unconfirmed = max((row.unconfirmed or 0) - settled.record_count, 0)

    def rejection(self, data_type: str, settled: confirm.Settled) -> ExportBatchFailure:
        """The failed records of one import set, with ServiceNow's state and comment per record, recorded on the run
        that sent them (this one when that run is gone)."""
        run_id = settled.pending.run_id
        if run_id != self.run.id and db.session.get(ExportRun, run_id) is None:
            run_id = self.run.id
        if settled.gave_up:
            days = confirm.GIVE_UP_AFTER.days
            message = (
                f"ServiceNow gave no transform result for this batch's import set within {days} days (it deletes "
                f"import sets after {days} days), so its {len(settled.gave_up)} records are sent again."
            )
            records = [{"u_source_id": source_id, STATE: "", COMMENT: ""} for source_id in settled.gave_up]
            detail = None
        else:
            states = Counter(row.state or "no state" for row in settled.rejected)
            breakdown = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
            message = (
                f"ServiceNow's transform did not write {len(settled.rejected)} of the {settled.record_count} records "
                f"of this batch ({breakdown}); the next export sends them again."
            )
            records = [
                {
                    **settled.values.get(row.sys_id, {}),
                    "u_source_id": row.source_id,
                    STATE: row.state,
                    COMMENT: row.comment,
                }
                for row in settled.rejected
            ]
            comments = list(dict.fromkeys(row.comment for row in settled.rejected if row.comment))
            detail = "; ".join(comments[:5])[:2000] or None
        return ExportBatchFailure(
            run_id=run_id,
            data_type=data_type,
            batch_number=settled.pending.batch_number,
            record_count=settled.not_written,
            status_code=None,
            error_kind=REJECTED_KIND,
            message=message,
            detail=detail,
            records_json=planner.encode_batch(records).decode(),
        )

    def servicenow_counts(self, data_type: str) -> None:
        """ServiceNow's own counts of this run's import sets, as last read (shown beside ours)."""
        ids = set(self.import_set_ids[data_type])
        read = self.results[data_type]
        if not ids or not read:
            return
        counts = self.counts[data_type]
        pending = {row.import_set_id for row in self.ledgers[data_type].pending()}
        counts.sn_import_sets = len(ids)
        counts.sn_import_sets_read = len(read)
        counts.sn_import_sets_complete = len(set(read) - pending)
        counts.sn_inserts = sum(r.inserts for r in read.values())
        counts.sn_updates = sum(r.updates for r in read.values())
        counts.sn_ignored = sum(r.ignored for r in read.values())
        counts.sn_skipped = sum(r.skipped for r in read.values())
        counts.sn_errors = sum(r.errors for r in read.values())


def outcome_of(run: ExportRun) -> tuple[str, str]:
    """The run's status and message from its counts (SPEC 5): `succeeded` only when ServiceNow's transform wrote every
    record sent and nothing is left unconfirmed; `failed` when nothing got through; else `partially_succeeded`."""
    total = {name: sum(getattr(dt, name) or 0 for dt in run.data_types) for name in COUNTS}
    not_confirmed = total["unconfirmed"] + total["earlier_unconfirmed"] + total["earlier_due"]
    parts = [_summary(dt) for dt in run.data_types]
    summary = "; ".join(parts) + "."
    earlier = _earlier_note(total)
    # Written means confirmed: a run whose counts do not account for every record sent is never `succeeded`, even
    # if a bookkeeping path forgot to count a record as failed or unconfirmed.
    if total["failed"] == 0 and not_confirmed == 0 and total["confirmed"] >= total["sent"]:
        if total["sent"] == 0:
            message = "Nothing to send: ServiceNow already has every record as it is in IT Asset Management."
            return runs.SUCCEEDED, f"{message} {earlier}".strip()
        return (
            runs.SUCCEEDED,
            f"ServiceNow at {run.instance_url} wrote every record sent (its import set results confirm each). "
            f"{summary} {earlier}".strip(),
        )
    reasons = " ".join(filter(None, [_failure_hint(run), _unconfirmed_note(run), earlier]))
    if total["confirmed"] == 0 and not_confirmed == 0:
        return runs.FAILED, f"ServiceNow at {run.instance_url} wrote none of the records sent. {summary} {reasons}"
    return (
        runs.PARTIALLY_SUCCEEDED,
        f"ServiceNow at {run.instance_url} did not write every record. {summary} {reasons}",
    )


def _summary(dt: ExportRunDataType) -> str:
    text = f"{registry_entry(dt.data_type).label}: {dt.sent} sent, {dt.confirmed or 0} written, {dt.failed} failed"
    if dt.unconfirmed:
        text += f", {dt.unconfirmed} not confirmed yet"
    return text


def _failure_hint(run: ExportRun) -> str:
    """What failed and what to do: batches ServiceNow refused, and records its transform did not write."""
    refused = [failure for failure in run.failed_batches if failure.error_kind != REJECTED_KIND]
    rejected = [failure for failure in run.failed_batches if failure.error_kind == REJECTED_KIND]
    hints = []
    if refused:
        count = sum(failure.record_count for failure in refused)
        # The pages show ServiceNow's message of each failed batch and link the failed records' CSV beside this.
        hints.append(f"{count} records were in batches ServiceNow did not accept. First failure: {refused[0].message}")
    if rejected:
        count = sum(failure.record_count for failure in rejected)
        said = f" ServiceNow said: {rejected[0].detail}" if rejected[0].detail else ""
        hints.append(
            f"ServiceNow's transform did not write {count} records; the failed records (CSV) carry its comment on "
            f"each, and the next export sends them again.{said}"
        )
    return " ".join(hints)


def _unconfirmed_note(run: ExportRun) -> str:
    notes = []
    for dt in run.data_types:
        count = (dt.unconfirmed or 0) + (dt.earlier_unconfirmed or 0)
        if not count:
            continue
        if dt.read_back_error:
            notes.append(
                f"{count} records could not be confirmed: {dt.read_back_error} The next export tries to confirm them."
            )
        else:
            notes.append(
                f"{count} records are not confirmed yet: ServiceNow was still transforming; the next export "
                "confirms them."
            )
    return " ".join(notes)


def _earlier_note(total: dict[str, int]) -> str:
    if not total["earlier_confirmed"] and not total["earlier_rejected"]:
        return ""
    note = f"Of records sent by earlier exports, ServiceNow has now written {total['earlier_confirmed']}"
    if total["earlier_rejected"]:
        rejected = total["earlier_rejected"]
        again = "by the next export" if total["earlier_due"] else "by this one"
        note += f" and did not write {rejected}: they are sent again {again} (see that export's failed records)"
    return note + "."


class ProcessSettings:
    """Two process-wide interpreter settings an export wants while it runs, set by the first export of the process
    to start and given back by the last to end (exports may run in threads of one host process; RQ's work horses run
    one each):

    * the switch interval: while the main thread plans batches (CPU), a sender whose answer has arrived waits for the
      interpreter lock up to the switch interval (5 ms by default), latency the instance never had;
    * the cyclic garbage collector's thresholds: an export allocates a few objects a record (rows, records, batches)
      that reference counting frees at once, yet with Python's defaults the collector ran about 600 times per
      100,000 records and walked the whole heap (the app, SQLAlchemy's metadata) several times: 0.23-0.36 s of the
      main thread's 1.3-1.7 s of CPU per 100,000 records on SQLite (issue #15, timed with gc.callbacks)."""

    def __init__(self, switch_interval: float, gc_thresholds: tuple[int, int, int]) -> None:
        self.switch_interval, self.gc_thresholds = switch_interval, gc_thresholds
        self._lock = threading.Lock()
        self._running = 0
        self._saved: tuple[float, tuple[int, int, int]] | None = None

    @contextmanager
    def applied(self):
        with self._lock:
            if self._running == 0:
                self._saved = (sys.getswitchinterval(), gc.get_threshold())
                sys.setswitchinterval(self.switch_interval)
                gc.set_threshold(*self.gc_thresholds)
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0 and self._saved is not None:
                    interval, thresholds = self._saved
                    sys.setswitchinterval(interval)
                    gc.set_threshold(*thresholds)
                    self._saved = None


WHILE_EXPORTING = ProcessSettings(SENDER_SWITCH_INTERVAL, EXPORT_GC_THRESHOLDS)


def prove_connection(client, data_types: list[str]) -> ConnectionCheck:
    """Before anything is planned, whatever the run has to send (SPEC 5): a token grant now (a cached access token
    proves nothing of a refresh token revoked since), one read, and the check that the connector's ServiceNow app is
    there for the chosen data types. Raises the ServiceNowError of the first that fails."""
    client.renew_access_token()
    # The app check of issue #13 (servicenow/app_check.py): a missing staging table stops the run here, named. It
    # reads beside the user read (one round trip for both, issue #15); a fault of the user read is raised first.
    app_check = client.in_background(require_app, client, data_types)
    try:
        check = client.check_connection()
    finally:
        app_error = app_check.exception()
    if app_error is not None:
        raise app_error
    return check


def export_run(run_id: int, source: InventorySource | None = None, client=None) -> str:
    """Claim a queued export run, prove the connection, run it to its end and return its status; every outcome is
    recorded on the run, and what the run saw of the connection on the tenant's connection state (SPEC 7). A rate
    limit longer than the run may wait puts it back in the queue until then (status `queued`)."""
    run = runs.claim(run_id)
    if run is None:
        return "not claimed"
    plugin = current_plugin()
    tenant_id, seen_from, proven = run.tenant_id, run.started_at, False
    try:
        client = client or client_for(run.tenant_id)
        if client.creds.instance_url != run.instance_url:
            run.instance_url = client.creds.instance_url
            db.session.commit()
        check = prove_connection(client, list(run.data_types_requested))
        proven = True
        connection.record_ok(tenant_id, check.message, by=connection.BY_RUN, seen_from=seen_from)
        run = db.session.get(ExportRun, run_id)
        exporter = Exporter(run, client, source or SqlInventorySource(), plugin.config)
        with WHILE_EXPORTING.applied():
            exporter.export()
            exporter.read_back()
        log.info("export run %s to %s: %s", run_id, client.host, exporter.pacer.summary())
        status, message = outcome_of(run)
        runs.finish(run, status, message)
    except (RunStopped, ServiceNowError) as stopped:
        error = stopped.error if isinstance(stopped, RunStopped) else stopped
        db.session.rollback()
        run = db.session.get(ExportRun, run_id)
        if errors.waits_beyond(error, plugin.config.max_wait_seconds):
            until = utcnow() + timedelta(seconds=math.ceil(error.retry_after))
            if runs.pause_for_rate_limit(run, until):
                log.info("export run %s waits for the rate limit of %s until %s", run_id, error.host, until)
                return run.status
            error = ServiceNowError(error.kind, errors.rate_limit_too_long_message(error.host or "", until))
        # What "ServiceNow's message" is, unless the message quotes it already.
        said = f" ServiceNow said: {error.detail[:500]}" if error.detail and error.detail not in error.message else ""
        if not proven or error.stops_run:
            connection.record_failure(tenant_id, error, by=connection.BY_RUN, seen_from=seen_from, said=said)
            run = db.session.get(ExportRun, run_id)
        runs.finish(run, runs.FAILED, error.message + said, str(error.kind))
    except Exception:
        log.exception("export run %s failed unexpectedly", run_id)
        db.session.rollback()
        run = db.session.get(ExportRun, run_id)
        runs.finish(run, runs.FAILED, runs.INTERNAL_ERROR, "internal")
    finally:
        if client is not None:
            client.close()
    return run.status
