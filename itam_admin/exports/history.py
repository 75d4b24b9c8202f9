"""Reading export runs for the tab, the JSON status, the history and the CLI: the tenant's active run, its last
finished one, recent ones, and one run as JSON. Every query is scoped to the asking tenant; nothing here writes.
"""

from __future__ import annotations

from sqlalchemy import select

from itam_admin.db import db
from itam_admin.exports.models import ExportRun
from itam_admin.exports.runs import ACTIVE_STATUSES, FINISHED_STATUSES


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
                # What ServiceNow's transform did with the records sent ("failed" includes "rejected"), and with
                # records of earlier runs this run confirmed.
                "confirmed": dt.confirmed or 0,
                "rejected": dt.rejected or 0,
                "unconfirmed": dt.unconfirmed or 0,
                "earlier": {
                    "confirmed": dt.earlier_confirmed or 0,
                    "rejected": dt.earlier_rejected or 0,
                    "unconfirmed": dt.earlier_unconfirmed or 0,
                    "to_send_again": dt.earlier_due or 0,
                },
                "read_back_error": dt.read_back_error,
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
