"""RQ jobs: putting export runs on the queue, running them in a worker, and finding queued runs whose job the queue
lost (Redis restarted empty, a job that ended before it claimed its run). Job arguments are run ids only."""

from __future__ import annotations

import importlib
import logging
import os
import time
from datetime import timedelta

from flask import Flask, current_app, has_app_context
from redis.exceptions import RedisError
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from itam_admin import current_plugin
from itam_admin.exports import outage

QUEUE_NAME = "itam-exports"
JOB_TIMEOUT_SECONDS = 6 * 3600
# The Export button commits its run a moment before it puts the job on the queue: younger runs are left alone.
LOST_JOB_GRACE = timedelta(seconds=60)
# A run whose job is still on the queue but that no worker took for this long ends failed, so its tenant can export
# again (weekly exports are spread over two hours; a day means no worker serves the queue).
QUEUED_AT_MOST = timedelta(hours=24)
# How long a work horse waits for the database before it gives its job up (the run is then queued again).
DATABASE_WAIT_SECONDS = 600.0
# RQ statuses of a job that will still run (or is running); any other status, or no job, means the run's job is gone.
_WAITING = {"queued", "started", "deferred", "scheduled", "created", "ready_to_enqueue", "rate_limited"}
log = logging.getLogger("itam_admin.exports")

# The app a worker process serves; set by `flask itam worker` (inherited by the forked work horse).
_worker_app: Flask | None = None


class QueueUnavailable(Exception):
    """Redis cannot be reached; the message is for the tenant admin."""


def job_id(run_id: int, attempt: int = 1) -> str:
    """The RQ job id of a run: `itam-export-<run id>`, with `-<attempt>` when the scheduler queued it again."""
    return f"itam-export-{run_id}" if attempt == 1 else f"itam-export-{run_id}-{attempt}"


def queue(connection=None):
    from rq import Queue

    return Queue(QUEUE_NAME, connection=connection or current_plugin().redis)


def enqueue_run(run, attempt: int = 1) -> None:
    try:
        queue().enqueue(
            "itam_admin.exports.jobs.perform_export",
            run.id,
            job_id=job_id(run.id, attempt),
            job_timeout=JOB_TIMEOUT_SECONDS,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
            on_failure="itam_admin.exports.jobs.export_job_failed",
            description=f"ServiceNow export run {run.id}",
        )
    except (RedisError, RuntimeError, OSError):
        log.warning("could not enqueue export run %s: Redis unreachable", run.id)
        raise QueueUnavailable(
            "The export queue (Redis) cannot be reached, so the export was not started. "
            "Try again in a few minutes; if it keeps failing, ask the portal operator to check Redis."
        ) from None


def set_worker_app(app: Flask) -> None:
    global _worker_app
    _worker_app = app


def _app() -> Flask:
    if has_app_context():
        return current_app._get_current_object()
    if _worker_app is not None:
        return _worker_app
    # A plain `rq worker`: load the host's app from ITAM_APP ("module:attribute", default the demo's wsgi:app).
    module_name, _, attribute = os.environ.get("ITAM_APP", "wsgi:app").partition(":")
    app = getattr(importlib.import_module(module_name), attribute or "app")
    set_worker_app(app)
    return app


def perform_export(run_id: int) -> str:
    """The job: run one export run to its end (any outcome is recorded on the run, never raised)."""
    from itam_admin.exports.runner import execute_run

    with _app().app_context():
        from itam_admin.db import db

        # A forked work horse must not share the parent's pooled connections.
        db.engine.dispose(close=False)
        wait_for_database(DATABASE_WAIT_SECONDS)
        return execute_run(run_id)


def wait_for_database(at_most: float) -> None:
    """Return once the database answers; retry with backoff, logging once, and re-raise after `at_most` seconds
    (the job then fails before it claimed its run; the scheduler queues the run again once the database answers)."""
    from itam_admin.db import db

    deadline, pause = time.monotonic() + at_most, 1.0
    while True:
        try:
            db.session.execute(text("SELECT 1"))
            db.session.rollback()
            outage.DATABASE.recovered()
            return
        except DBAPIError as error:
            db.session.rollback()
            outage.DATABASE.failed(error.orig or error)
            if time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 30.0)


def export_job_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ's failure callback (job crashed or its work horse died): the run ends failed, never stuck running."""
    from itam_admin.exports.runner import mark_interrupted

    run_id = job.args[0] if job.args else None
    if run_id is None:
        return
    with _app().app_context():
        mark_interrupted(int(run_id), reason=exc_type.__name__ if exc_type else "the worker stopped")


def _waiting_job_ids(connection, candidates: list[str]) -> set[str]:
    """Which of these job ids Redis still holds as a job that will run: its hash has a waiting status and, when
    queued, its id is on the queue (or being handed to a worker). Raises RedisError when Redis does not answer."""
    from rq.job import Job
    from rq.utils import as_text

    with connection.pipeline(transaction=False) as pipe:
        for candidate in candidates:
            pipe.hget(Job.key_for(candidate), "status")
        statuses = [None if s is None else as_text(s) for s in pipe.execute()]
    the_queue = queue(connection)
    on_queue = None
    waiting = set()
    for candidate, status in zip(candidates, statuses, strict=True):
        if status not in _WAITING:
            continue
        if status == "queued":
            if on_queue is None:
                intermediate = connection.lrange(the_queue.intermediate_queue_key, 0, -1)
                on_queue = set(the_queue.get_job_ids()) | {as_text(i) for i in intermediate}
            if candidate not in on_queue:
                continue
        waiting.add(candidate)
    return waiting


def recover_lost_runs() -> list[str]:
    """Queued runs whose job is gone are queued once more under a new job id, or end failed when that one is gone
    too; runs queued far too long end failed. Returns what was done, per run. Raises RedisError when Redis does not
    answer (nothing is then decided: a queue we cannot see is not a lost queue)."""
    from itam_admin.db import db, utcnow
    from itam_admin.exports.models import QUEUED, ExportRun
    from itam_admin.exports.runner import QUEUE_LOST, QUEUE_STALLED, mark_lost

    now = utcnow()
    runs = db.session.execute(
        select(ExportRun.id, ExportRun.tenant_id, ExportRun.job_id, ExportRun.queued_at).where(
            ExportRun.status == QUEUED, ExportRun.queued_at < now - LOST_JOB_GRACE
        )
    ).all()
    db.session.rollback()
    if not runs:
        return []
    try:
        connection = current_plugin().redis
    except RuntimeError as error:  # no REDIS_URL: nothing can be known about the queue
        raise RedisError(str(error)) from None
    current = {run.id: run.job_id or job_id(run.id) for run in runs}
    waiting = _waiting_job_ids(connection, list(current.values()))
    outage.REDIS.recovered()
    done = []
    for run in runs:
        if current[run.id] in waiting:
            if run.queued_at < now - QUEUED_AT_MOST and mark_lost(run.id, QUEUE_STALLED, "queue_stalled"):
                done.append(f"{run.tenant_id}: run {run.id} failed (no worker took it)")
            continue
        if run.job_id is None and _requeue(run.id):
            done.append(f"{run.tenant_id}: run {run.id} queued again (its job was lost)")
        elif run.job_id is not None and mark_lost(run.id, QUEUE_LOST, "queue_lost"):
            done.append(f"{run.tenant_id}: run {run.id} failed (its job was lost twice)")
    for line in done:
        log.warning("export queue check: %s", line)
    return done


def _requeue(run_id: int) -> bool:
    """Queue a run again, once: the new job goes on the queue before the run records its id, so another scheduler
    that sees the id also finds the job (two schedulers at once may both enqueue it; only one job claims the run)."""
    from itam_admin.db import db
    from itam_admin.exports.models import QUEUED, ExportRun

    run = db.session.get(ExportRun, run_id)
    if run is None or run.status != QUEUED or run.job_id is not None:
        db.session.rollback()
        return False
    try:
        enqueue_run(run, attempt=2)
    except QueueUnavailable:
        db.session.rollback()
        raise RedisError("the export queue did not take the job again") from None
    db.session.execute(
        update(ExportRun)
        .where(ExportRun.id == run_id, ExportRun.status == QUEUED, ExportRun.job_id.is_(None))
        .values(job_id=job_id(run_id, 2))
    )
    db.session.commit()
    return True
