"""The life of an export run, in one place: create and queue, claim, heartbeat, finish, interrupt, reap, skip, pause
for ServiceNow's rate limit and resume, and recover runs whose job the queue lost; with the status values and the
messages a tenant admin reads about them.

One export per tenant at a time is guaranteed by the database (a unique index over active runs), not by timing;
nothing here talks to ServiceNow or touches a secret.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from itam_admin.datatypes import DATA_TYPE_NAMES
from itam_admin.db import db, utcnow
from itam_admin.exports import job_queue, outage
from itam_admin.exports.models import ExportRun, ExportRunDataType
from itam_admin.identity import Identity
from itam_admin.inventory.source import SqlInventorySource
from itam_admin.servicenow.errors import waiting_for_rate_limit_message
from itam_admin.settings.connection import connection_of
from itam_admin.settings.store import load_settings

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, SKIPPED = "succeeded", "partially_succeeded", "failed", "skipped"
ACTIVE_STATUSES = (QUEUED, RUNNING)  # the partial unique index in models.py names the same two
FINISHED_STATUSES = (SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, SKIPPED)
MANUAL, WEEKLY = "manual", "weekly"

# The Export button commits its run a moment before it puts the job on the queue: younger runs are left alone.
LOST_JOB_GRACE = timedelta(seconds=60)
# A run whose job is still on the queue but that no worker took for this long ends failed, so its tenant can export
# again (weekly exports are spread over two hours; a day means no worker serves the queue).
QUEUED_AT_MOST = timedelta(hours=24)
# A run ServiceNow's rate limit keeps pausing ends failed instead once it would wait past this since it was queued: a
# limit too small for the export must not hold the tenant's one export slot for ever.
RATE_LIMIT_HOLD_AT_MOST = timedelta(hours=12)

ALREADY_ACTIVE = "An export is already queued or running; wait for it to finish."
DATABASE_UNREACHABLE = "The portal's database is not reachable right now; try again in a few minutes."
QUEUE_LOST = (
    "The export queue lost this export before a worker started it (for example, Redis was restarted); start it "
    "again. Nothing was sent."
)
QUEUE_STALLED = (
    "No export worker started this export within a day, so it was given up; start it again, and if it stays queued "
    "ask the portal operator to check that the export workers are running. Nothing was sent."
)
INTERNAL_ERROR = (
    "The export stopped because of an internal error in the portal. Records that ServiceNow had accepted are "
    "remembered; try again, and if it happens again contact the portal operator."
)

log = logging.getLogger("itam_admin.exports")


class ExportNotStarted(Exception):
    """An export could not be started; the message says why and what to do. `run` is the run that was created and
    ended failed (a weekly one the queue did not take), else None."""

    def __init__(self, message: str, run: ExportRun | None = None) -> None:
        super().__init__(message)
        self.run = run


def interrupted_message(reason: str) -> str:
    return (
        f"The export was interrupted ({reason}) before it finished. Records that ServiceNow had accepted are "
        "remembered; start the export again to send the rest."
    )


def create_run(tenant_id: str, trigger: str, actor: Identity | None, full: bool, week: str | None = None) -> ExportRun:
    """Insert a queued run, or raise ExportNotStarted when exports are disabled or one is already active (or waiting
    for ServiceNow's rate limit). A weekly run does not start while the tenant needs a new token (SPEC 7); a manual
    one does, and proves the connection first."""
    settings = load_settings(tenant_id)
    if not settings.export_enabled:
        raise ExportNotStarted(settings.export_disabled_reason)
    if trigger == WEEKLY and (reason := connection_of(tenant_id).weekly_skip_reason):
        raise ExportNotStarted(reason)
    run = ExportRun(
        tenant_id=tenant_id,
        trigger=trigger,
        triggered_by_id=actor.user_id if actor else None,
        triggered_by_name=actor.display_name if actor else None,
        status=QUEUED,
        full=full,
        instance_url=settings.instance_url,
        data_types_requested=[t for t in DATA_TYPE_NAMES if t in settings.export_data_types],
        week=week,
    )
    source = SqlInventorySource()
    for position, data_type in enumerate(run.data_types_requested):
        # Counted now (one indexed count each) so a queued run shows what it will go through, not "0 of 0".
        total = source.count(tenant_id, data_type)
        run.data_types.append(ExportRunDataType(data_type=data_type, position=position, total=total))
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ExportNotStarted(_why_active(tenant_id)) from None
    return run


def _why_active(tenant_id: str) -> str:
    waiting = db.session.scalar(
        select(ExportRun.resume_at).where(
            ExportRun.tenant_id == tenant_id, ExportRun.status == QUEUED, ExportRun.resume_at.is_not(None)
        )
    )
    db.session.rollback()
    if waiting is None:
        return ALREADY_ACTIVE
    return f"An export is already under way. {waiting_for_rate_limit_message(waiting)}"


def queue_run(
    redis: Redis | None,
    tenant_id: str,
    trigger: str = MANUAL,
    actor: Identity | None = None,
    full: bool = False,
    week: str | None = None,
) -> ExportRun:
    """Create a run and put its job on the queue: the one way the Export button, the CLI and the scheduler start an
    export. When the queue cannot be reached, a manual run is removed (its admin reads why at once) and a weekly one
    ends failed with the reason (nobody is watching: the history says it); ExportNotStarted either way."""
    try:
        run = create_run(tenant_id, trigger, actor, full, week)
    except OperationalError:
        db.session.rollback()
        raise ExportNotStarted(DATABASE_UNREACHABLE) from None
    try:
        job_queue.enqueue_job(redis, run.id)
    except job_queue.QueueUnavailable as error:
        if trigger == WEEKLY:
            finish(run, FAILED, str(error), "queue_unavailable")
            raise ExportNotStarted(str(error), run) from None
        db.session.delete(run)
        db.session.commit()
        raise ExportNotStarted(str(error)) from None
    return run


def record_skipped(tenant_id: str, week: str, reason: str, now: datetime) -> ExportRun:
    """A weekly export that could not start: a finished `skipped` run saying why."""
    run = ExportRun(
        tenant_id=tenant_id,
        trigger=WEEKLY,
        status=SKIPPED,
        week=week,
        queued_at=now,
        finished_at=now,
        message=f"The weekly export did not run: {reason}",
        data_types_requested=[],
    )
    db.session.add(run)
    db.session.commit()
    return run


def claim(run_id: int) -> ExportRun | None:
    """Move a queued run to running; None when another worker has it or it is not queued any more."""
    now = utcnow()
    result = db.session.execute(
        update(ExportRun)
        .where(ExportRun.id == run_id, ExportRun.status == QUEUED, ExportRun.resume_at.is_(None))
        .values(status=RUNNING, started_at=now, heartbeat_at=now)
    )
    db.session.commit()
    if result.rowcount != 1:
        return None
    return db.session.get(ExportRun, run_id)


def heartbeat(run: ExportRun) -> None:
    """Note that the run's worker is alive (committed with the caller's next commit); the reaper looks at it."""
    run.heartbeat_at = utcnow()


def finish(run: ExportRun, status: str, message: str | None, kind: str | None = None) -> None:
    run.status, run.message, run.error_kind, run.finished_at = status, message, kind, utcnow()
    db.session.commit()


def pause_for_rate_limit(run: ExportRun, until: datetime) -> bool:
    """Put a running run back in the queue until ServiceNow's rate limit ends (its Retry-After was longer than an
    export waits); the scheduler queues its job again then (resume_waiting_runs). False when it has been held back
    too long already: the caller then ends it failed."""
    if until - run.queued_at > RATE_LIMIT_HOLD_AT_MOST:
        return False
    run.status, run.resume_at, run.heartbeat_at = QUEUED, until, None
    run.message, run.error_kind = waiting_for_rate_limit_message(until), "rate_limited_wait"
    db.session.commit()
    return True


def resume_waiting_runs(redis: Redis | None, now: datetime | None = None) -> list[str]:
    """Queue the job of each run whose rate-limit pause is over; returns what was done, per run. Raises RedisError
    when Redis does not take a job (the run keeps waiting and the next pass tries again)."""
    now = now or utcnow()
    due = db.session.execute(
        select(ExportRun.id, ExportRun.tenant_id, ExportRun.resume_at).where(
            ExportRun.status == QUEUED, ExportRun.resume_at.is_not(None), ExportRun.resume_at <= now
        )
    ).all()
    db.session.rollback()
    done = []
    for run in due:
        # One job id per pause (RQ job ids are unique), from the resume time: schedulers racing enqueue the same one.
        attempt = int(run.resume_at.timestamp())
        try:
            new_job_id = job_queue.enqueue_job(redis, run.id, attempt=attempt)
        except job_queue.QueueUnavailable:
            raise RedisError("the export queue did not take a resumed job") from None
        result = db.session.execute(
            update(ExportRun)
            .where(ExportRun.id == run.id, ExportRun.status == QUEUED, ExportRun.resume_at == run.resume_at)
            .values(resume_at=None, job_id=new_job_id, message=None, error_kind=None)
        )
        db.session.commit()
        if result.rowcount == 1:
            done.append(f"{run.tenant_id}: run {run.id} queued again (ServiceNow's rate limit is over)")
    for line in done:
        log.info("export queue: %s", line)
    return done


def mark_interrupted(run_id: int, reason: str = "the worker stopped") -> bool:
    """End a run whose worker died: failed, 'interrupted'. The next export sends what it did not."""
    return _end_active_run(run_id, ACTIVE_STATUSES, "interrupted", interrupted_message(reason))


def mark_lost(run_id: int, message: str, kind: str) -> bool:
    """End a queued run that no job will ever start; a run a worker claimed meanwhile is left alone."""
    return _end_active_run(run_id, (QUEUED,), kind, message)


def _end_active_run(run_id: int, statuses: tuple[str, ...], kind: str, message: str) -> bool:
    db.session.rollback()
    result = db.session.execute(
        update(ExportRun)
        .where(ExportRun.id == run_id, ExportRun.status.in_(statuses))
        .values(status=FAILED, finished_at=utcnow(), error_kind=kind, message=message)
    )
    db.session.commit()
    return result.rowcount == 1


def reap_stale_runs(stale_after_seconds: int) -> int:
    """Mark running runs whose heartbeat stopped (worker killed, machine lost) as interrupted."""
    limit = utcnow() - timedelta(seconds=stale_after_seconds)
    stale = db.session.scalars(
        select(ExportRun.id).where(ExportRun.status == RUNNING, ExportRun.heartbeat_at < limit)
    ).all()
    return sum(1 for run_id in stale if mark_interrupted(run_id, "no sign of life from its worker"))


def recover_lost_runs(redis: Redis | None) -> list[str]:
    """Queued runs whose job is gone are queued once more under a new job id, or end failed when that one is gone
    too; runs queued far too long end failed. Returns what was done, per run. Raises RedisError when Redis does not
    answer (nothing is then decided: a queue we cannot see is not a lost queue)."""
    now = utcnow()
    # A run waiting for ServiceNow's rate limit has no job on purpose until resume_waiting_runs queues one.
    runs = db.session.execute(
        select(ExportRun.id, ExportRun.tenant_id, ExportRun.job_id, ExportRun.queued_at).where(
            ExportRun.status == QUEUED, ExportRun.queued_at < now - LOST_JOB_GRACE, ExportRun.resume_at.is_(None)
        )
    ).all()
    db.session.rollback()
    if not runs:
        return []
    if redis is None:  # no REDIS_URL: nothing can be known about the queue
        raise RedisError("REDIS_URL is not set")
    current = {run.id: run.job_id or job_queue.job_id(run.id) for run in runs}
    waiting = job_queue.waiting_job_ids(redis, list(current.values()))
    outage.REDIS.recovered()
    done = []
    for run in runs:
        if current[run.id] in waiting:
            if run.queued_at < now - QUEUED_AT_MOST and mark_lost(run.id, QUEUE_STALLED, "queue_stalled"):
                done.append(f"{run.tenant_id}: run {run.id} failed (no worker took it)")
            continue
        if run.job_id is None and _queue_again(redis, run.id):
            done.append(f"{run.tenant_id}: run {run.id} queued again (its job was lost)")
        elif run.job_id is not None and mark_lost(run.id, QUEUE_LOST, "queue_lost"):
            done.append(f"{run.tenant_id}: run {run.id} failed (its job was lost twice)")
    for line in done:
        log.warning("export queue check: %s", line)
    return done


def _queue_again(redis: Redis, run_id: int) -> bool:
    """Queue a run again, once: the new job goes on the queue before the run records its id, so another scheduler
    that sees the id also finds the job (two schedulers at once may both enqueue it; only one job claims the run)."""
    run = db.session.get(ExportRun, run_id)
    if run is None or run.status != QUEUED or run.job_id is not None:
        db.session.rollback()
        return False
    try:
        new_job_id = job_queue.enqueue_job(redis, run_id, attempt=2)
    except job_queue.QueueUnavailable:
        db.session.rollback()
        raise RedisError("the export queue did not take the job again") from None
    db.session.execute(
        update(ExportRun)
        .where(ExportRun.id == run_id, ExportRun.status == QUEUED, ExportRun.job_id.is_(None))
        .values(job_id=new_job_id)
    )
    db.session.commit()
    return True
