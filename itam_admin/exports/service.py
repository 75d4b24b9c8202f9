"""Starting export runs and reading their state for the page, the JSON status and the CLI.

One export per tenant at a time is guaranteed by the database (a unique index over active runs), not by timing;
nothing here touches ServiceNow or a secret.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from itam_admin.db import db
from itam_admin.exports.models import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    MANUAL,
    QUEUED,
    ExportRun,
    ExportRunDataType,
)
from itam_admin.exports.records import DATA_TYPES
from itam_admin.identity import Identity
from itam_admin.tenant_settings import load_settings


class ExportNotStarted(Exception):
    """An export could not be started; the message says why and what to do."""


def active_run(tenant_id: str) -> ExportRun | None:
    return db.session.scalar(
        select(ExportRun).where(ExportRun.tenant_id == tenant_id, ExportRun.status.in_(ACTIVE_STATUSES))
    )


def last_completed_run(tenant_id: str) -> ExportRun | None:
    return db.session.scalar(
        select(ExportRun)
        .where(ExportRun.tenant_id == tenant_id, ExportRun.status.in_(FINISHED_STATUSES))
        .order_by(ExportRun.finished_at.desc(), ExportRun.id.desc())
        .limit(1)
    )


def recent_runs(tenant_id: str, limit: int = 20) -> list[ExportRun]:
    return list(
        db.session.scalars(
            select(ExportRun).where(ExportRun.tenant_id == tenant_id).order_by(ExportRun.id.desc()).limit(limit)
        )
    )


def tenant_run(tenant_id: str, run_id: int) -> ExportRun | None:
    """A run only if it belongs to the tenant: ids from a URL never reach another tenant's runs."""
    return db.session.scalar(select(ExportRun).where(ExportRun.id == run_id, ExportRun.tenant_id == tenant_id))


def create_run(tenant_id: str, trigger: str, actor: Identity | None, full: bool, week: str | None = None) -> ExportRun:
    """Insert a queued run, or raise ExportNotStarted when exports are disabled or one is already active."""
    settings = load_settings(tenant_id)
    if not settings.export_enabled:
        raise ExportNotStarted(settings.export_disabled_reason)
    run = ExportRun(
        tenant_id=tenant_id,
        trigger=trigger,
        triggered_by_id=actor.user_id if actor else None,
        triggered_by_name=actor.display_name if actor else None,
        status=QUEUED,
        full=full,
        instance_url=settings.instance_url,
        data_types_requested=[t for t in DATA_TYPES if t in settings.export_data_types],
        week=week,
    )
    for position, data_type in enumerate(run.data_types_requested):
        run.data_types.append(ExportRunDataType(data_type=data_type, position=position))
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ExportNotStarted("An export is already queued or running; wait for it to finish.") from None
    return run


def start_export(tenant_id: str, actor: Identity | None, full: bool = False, trigger: str = MANUAL) -> ExportRun:
    """Create a run and put its job on the queue; a queue that cannot be reached leaves no run behind."""
    from itam_admin.exports import jobs

    try:
        run = create_run(tenant_id, trigger, actor, full)
    except OperationalError:
        db.session.rollback()
        raise ExportNotStarted(
            "The portal's database is not reachable right now; try again in a few minutes."
        ) from None
    try:
        jobs.enqueue_run(run)
    except jobs.QueueUnavailable as error:
        db.session.delete(run)
        db.session.commit()
        raise ExportNotStarted(str(error)) from None
    return run


def run_as_json(run: ExportRun | None) -> dict | None:
    if run is None:
        return None

    def when(value):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

    return {
        "id": run.id,
        "trigger": run.trigger,
        "triggered_by": run.triggered_by_name,
        "status": run.status,
        "full": run.full,
        "queued_at": when(run.queued_at),
        "started_at": when(run.started_at),
        "finished_at": when(run.finished_at),
        "duration_seconds": run.duration_seconds,
        "message": run.message,
        "data_types": {
            dt.data_type: {
                "total": dt.total,
                "sent": dt.sent,
                "failed": dt.failed,
                "new": dt.new,
                "changed": dt.changed,
                "retired": dt.retired,
                "unchanged": dt.unchanged,
                "servicenow": None
                if dt.sn_inserts is None
                else {
                    "inserts": dt.sn_inserts,
                    "updates": dt.sn_updates,
                    "ignored": dt.sn_ignored,
                    "skipped": dt.sn_skipped,
                    "errors": dt.sn_errors,
                    "import_sets": dt.sn_import_sets,
                    "import_sets_read": dt.sn_import_sets_read,
                    "import_sets_complete": dt.sn_import_sets_complete,
                },
            }
            for dt in run.data_types
        },
    }
