"""The RQ job functions a worker runs: one export run to its end, and RQ's callback when a job crashed. Job
arguments are run ids only; each job loads what it needs, and can be run by hand (`export_job(run_id)` in an app
context)."""

from __future__ import annotations

import importlib
import logging
import os
import time

from flask import Flask, current_app, has_app_context
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from itam_admin.db import db
from itam_admin.exports import outage, runs
from itam_admin.exports.exporter import export_run

# How long a work horse waits for the database before it gives its job up (the run is then queued again).
DATABASE_WAIT_SECONDS = 600.0
log = logging.getLogger("itam_admin.exports")

# The app a worker process serves; set by `flask itam worker` (inherited by the forked work horse).
_worker_app: Flask | None = None


class NoWorkerApp(RuntimeError):
    """A plain `rq worker` was started without ITAM_APP naming the host's app."""


def set_worker_app(app: Flask) -> None:
    global _worker_app
    _worker_app = app


def _app() -> Flask:
    if has_app_context():
        return current_app._get_current_object()
    if _worker_app is not None:
        return _worker_app
    # A plain `rq worker`: load the host's app from ITAM_APP ("module:attribute"); the plugin knows no host.
    spec = os.environ.get("ITAM_APP", "").strip()
    if not spec:
        raise NoWorkerApp(
            "Set ITAM_APP to the host's Flask app (module:attribute, e.g. wsgi:app) for a plain rq worker, "
            "or run `flask --app <host> itam worker`."
        )
    module_name, _, attribute = spec.partition(":")
    app = getattr(importlib.import_module(module_name), attribute or "app")
    set_worker_app(app)
    return app


def export_job(run_id: int) -> str:
    """The job: run one export run to its end (any outcome is recorded on the run, never raised)."""
    with _app().app_context():
        # A forked work horse must not share the parent's pooled connections.
        db.engine.dispose(close=False)
        wait_for_database(DATABASE_WAIT_SECONDS)
        return export_run(run_id)


def wait_for_database(at_most: float) -> None:
    """Return once the database answers; retry with backoff, logging once, and re-raise after `at_most` seconds
    (the job then fails before it claimed its run; the scheduler queues the run again once the database answers)."""
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
    run_id = job.args[0] if job.args else None
    if run_id is None:
        return
    with _app().app_context():
        runs.mark_interrupted(int(run_id), reason=exc_type.__name__ if exc_type else "the worker stopped")
