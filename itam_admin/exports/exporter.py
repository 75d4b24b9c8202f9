"""The exporter: runs one export run by streaming each chosen data type's plan, batching it, posting batches to the
Import Set API with several requests in flight, and recording progress, the ledger and the outcome.

Only the main thread touches the database; sender threads only talk to ServiceNow. Any fault ends in a recorded
outcome (never a run left `running`), and what ServiceNow accepted is remembered even when the run fails.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from itam_admin.datatypes import DATA_TYPE_NAMES
from itam_admin.datatypes import data_type as registry_entry
from itam_admin.db import db, utcnow
from itam_admin.exports import planner, runs
from itam_admin.exports.ledger import Ledger
from itam_admin.exports.models import ExportBatchFailure, ExportRun
from itam_admin.inventory.source import InventorySource, SqlInventorySource
from itam_admin.plugin import current_plugin
from itam_admin.servicenow import errors
from itam_admin.servicenow.app_check import require_app
from itam_admin.servicenow.client import ConnectionCheck
from itam_admin.servicenow.errors import ErrorKind, ServiceNowError
from itam_admin.settings import connection
from itam_admin.tenant_client import client_for

log = logging.getLogger("itam_admin.exports")
PROGRESS_EVERY_SECONDS = 1.0
SENDER_SWITCH_INTERVAL = 0.0005  # seconds; see responsive_senders()
COUNTS = ("total", "sent", "failed", "new", "changed", "retired", "unchanged")
READ_BACK_IMPORT_SETS = 200  # per data type; enough for the counts of a weekly differential export


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


def body_of(items: list[planner.Planned]) -> bytes:
    return planner.encode_batch([item.record for item in items])


def send_batch(client, staging_table: str, batch: Batch, max_bytes: int) -> BatchOutcome:
    """Post a batch; one over max_bytes, or answered 413, is split in halves (down to single records). Runs in a
    sender thread, so encoding the body happens there too."""
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
        outcome.accepted.extend(items)
        outcome.import_set_ids.append(ids.import_set_id)
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
        # Totals start as counted when the run was queued, so data types not begun yet do not read "0 of 0".
        self.tally = {dt.data_type: {**dict.fromkeys(COUNTS, 0), "total": dt.total or 0} for dt in run.data_types}
        self.last_progress = 0.0
        self.batch_number = 0
        self.import_set_ids: dict[str, list[str]] = {data_type: [] for data_type in self.counts}
        self.ledgers = {data_type: Ledger(run.tenant_id, run.instance_url, data_type) for data_type in self.counts}

    def export(self) -> None:
        for data_type in DATA_TYPE_NAMES:
            if data_type in self.counts:
                self.export_data_type(data_type)

    def export_data_type(self, data_type: str) -> None:
        counts = self.counts[data_type]
        started = utcnow()
        self.tally[data_type]["total"] = self.source.count(self.run.tenant_id, data_type)
        self.save_progress(force=True)
        staging_table = registry_entry(data_type).staging_table
        in_flight = self.config.requests_in_flight
        pending: set[Future] = set()
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="itam-send") as pool:
            try:
                for batch in self.batches(data_type):
                    # One batch waiting per sender besides the one on the wire: a sender that finishes starts its
                    # next request at once instead of waiting for this thread to record and plan.
                    while len(pending) >= 2 * in_flight:
                        self.collect(pending)
                    pending.add(pool.submit(send_batch, self.client, staging_table, batch, self.config.max_batch_bytes))
                while pending:
                    self.collect(pending)
            except RunStopped:
                for future in pending:
                    future.cancel()
                self.drain(pending)
                raise
        # Stored once per data type, not at every progress save: a big export has thousands of import sets.
        counts.import_set_ids = list(self.import_set_ids[data_type])
        if self.tally[data_type]["failed"] == 0:
            self.ledgers[data_type].set_watermark(started - self.config.differential_margin)
        self.save_progress(force=True)

    def batches(self, data_type: str):
        """Group what the plan says to send into batches of at most batch_size records (the sender splits one that
        encodes to more than max_batch_bytes)."""
        tally = self.tally[data_type]
        limit = self.config.batch_size
        batch = Batch(data_type, self.next_batch_number())
        plan = planner.Plan(self.run.tenant_id, self.run.instance_url, data_type, self.source, self.run.full)
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
            self.remember(outcome.batch.data_type, outcome.accepted)
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

    def remember(self, data_type: str, accepted: list[planner.Planned]) -> None:
        """Advance the differential state for records ServiceNow accepted (only these: nothing is lost)."""
        ledger = self.ledgers[data_type]
        ledger.release([item.source_id for item in accepted if item.action == planner.RETIRED])
        ledger.hold([(item.source_id, item.content_hash) for item in accepted if item.action != planner.RETIRED])

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
        db.session.commit()

    def read_back(self) -> None:
        """ServiceNow-side counts of the import sets, where the instance answers; never fails the run. ServiceNow
        transforms import sets after answering, so unfinished ones are asked again (waiting 2, 4, 8... seconds, at
        most read_back_wait_seconds in all), then shown as unfinished."""
        waits, wait = [], 2.0
        while sum(waits) + wait <= self.config.read_back_wait_seconds:
            waits.append(wait)
            wait *= 2
        for data_type, counts in self.counts.items():
            ids = self.import_set_ids[data_type][:READ_BACK_IMPORT_SETS]
            if not ids:
                continue
            runs: dict = {}
            for wait_seconds in (0.0, *waits):
                time.sleep(wait_seconds)
                self.save_progress(force=True)  # a heartbeat while we wait
                try:
                    runs = self.client.import_set_runs(ids)
                except ServiceNowError as error:
                    log.info("could not read import set results from %s: %s", self.client.host, error.kind)
                    runs = {}
                    break
                if sum(1 for r in runs.values() if r.state.startswith("complete")) == len(ids):
                    break
            if not runs:
                continue
            counts.sn_import_sets = len(self.import_set_ids[data_type])
            counts.sn_import_sets_read = len(ids)
            counts.sn_import_sets_complete = sum(1 for r in runs.values() if r.state.startswith("complete"))
            counts.sn_inserts = sum(r.inserts for r in runs.values())
            counts.sn_updates = sum(r.updates for r in runs.values())
            counts.sn_ignored = sum(r.ignored for r in runs.values())
            counts.sn_skipped = sum(r.skipped for r in runs.values())
            counts.sn_errors = sum(r.errors for r in runs.values())
        db.session.commit()


def outcome_of(run: ExportRun) -> tuple[str, str]:
    sent = sum(dt.sent for dt in run.data_types)
    failed = sum(dt.failed for dt in run.data_types)
    parts = [f"{registry_entry(dt.data_type).label}: {dt.sent} sent, {dt.failed} failed" for dt in run.data_types]
    summary = "; ".join(parts) + "."
    if failed == 0:
        if sent == 0:
            return (
                runs.SUCCEEDED,
                "Nothing to send: ServiceNow already has every record as it is in IT Asset Management.",
            )
        return runs.SUCCEEDED, f"All records were accepted by ServiceNow at {run.instance_url}. {summary}"
    if sent == 0:
        return (
            runs.FAILED,
            f"ServiceNow at {run.instance_url} accepted none of the batches. {summary} {_failure_hint(run)}",
        )
    return (
        runs.PARTIALLY_SUCCEEDED,
        f"Some batches were not accepted by ServiceNow at {run.instance_url}. {summary} {_failure_hint(run)}",
    )


def _failure_hint(run: ExportRun) -> str:
    first = run.failed_batches[0] if run.failed_batches else None
    if first is None:
        return ""
    # The pages show ServiceNow's message of each failed batch and link the failed records' CSV beside this.
    return f"First failure: {first.message}"


@contextmanager
def responsive_senders(interval: float = SENDER_SWITCH_INTERVAL):
    """While this thread plans batches (CPU), a sender whose answer has arrived waits for the interpreter lock up to
    the switch interval (5 ms by default): per request that is latency the instance never had. Shorten it."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def prove_connection(client, data_types: list[str]) -> ConnectionCheck:
    """Before anything is planned, whatever the run has to send (SPEC 5): a token grant now (a cached access token
    proves nothing of a refresh token revoked since), one read, and the check that the connector's ServiceNow app is
    there for the chosen data types. Raises the ServiceNowError of the first that fails."""
    client.renew_access_token()
    check = client.check_connection()
    # The app check of issue #13 (servicenow/app_check.py): a missing staging table stops the run here, named.
    require_app(client, data_types)
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
        with responsive_senders():
            exporter.export()
        exporter.read_back()
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
