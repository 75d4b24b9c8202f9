"""RQ jobs: putting export runs on the queue and running them in a worker. Job arguments are run ids only."""

from __future__ import annotations

import importlib
import logging
import os

from flask import Flask, current_app, has_app_context
from redis.exceptions import RedisError

from itam_admin import current_plugin

QUEUE_NAME = "itam-exports"
JOB_TIMEOUT_SECONDS = 6 * 3600
log = logging.getLogger("itam_admin.exports")

# The app a worker process serves; set by `flask itam worker` (inherited by the forked work horse).
_worker_app: Flask | None = None


class QueueUnavailable(Exception):
    """Redis cannot be reached; the message is for the tenant admin."""


def job_id(run_id: int) -> str:
    return f"itam-export-{run_id}"


def queue(connection=None):
    from rq import Queue

    return Queue(QUEUE_NAME, connection=connection or current_plugin().redis)


def enqueue_run(run) -> None:
    try:
        queue().enqueue(
            "itam_admin.exports.jobs.perform_export",
            run.id,
            job_id=job_id(run.id),
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
        return execute_run(run_id)


def export_job_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ's failure callback (job crashed or its work horse died): the run ends failed, never stuck running."""
    from itam_admin.exports.runner import mark_interrupted

    run_id = job.args[0] if job.args else None
    if run_id is None:
        return
    with _app().app_context():
        mark_interrupted(int(run_id), reason=exc_type.__name__ if exc_type else "the worker stopped")
