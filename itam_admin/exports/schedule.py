"""The weekly export: when each tenant's is due, and the scheduler tick that starts it exactly once per week.

Tenants are spread over a window after the configured time (the same slot every week); a unique row per tenant and
ISO week makes several schedulers safe, and only the latest missed week is ever caught up.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from redis import Redis
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from itam_admin.config import Config
from itam_admin.db import db, utcnow
from itam_admin.exports import runs
from itam_admin.exports.models import WeeklySlot
from itam_admin.settings.store import configured_settings
from itam_admin.settings.values import ServiceNowSettings

log = logging.getLogger("itam_admin.schedule")


def slot_offset(tenant_id: str, window_minutes: int) -> timedelta:
    """A stable offset in [0, window) for a tenant, so tenants spread out and keep their slot every week."""
    digest = int.from_bytes(hashlib.sha256(tenant_id.encode()).digest()[:8], "big")
    return timedelta(seconds=digest % max(window_minutes * 60, 1))


def due_in_week(tenant_id: str, monday: datetime, config: Config) -> datetime:
    when = config.weekly_export
    base = monday.replace(hour=when.hour, minute=when.minute, second=0, microsecond=0) + timedelta(days=when.weekday)
    return base + slot_offset(tenant_id, config.weekly_window_minutes)


def _monday(moment: datetime) -> datetime:
    return (moment - timedelta(days=moment.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)


def week_key(due: datetime) -> str:
    year, week, _ = due.isocalendar()
    return f"{year}-W{week:02d}"


def latest_due(tenant_id: str, settings: ServiceNowSettings, config: Config, now: datetime) -> datetime | None:
    """The most recent due time at or before now that comes after the settings were first saved."""
    start = settings.configured_at or settings.saved_at
    if start is None:
        return None
    monday = _monday(now)
    for weeks_back in range(0, 2):
        due = due_in_week(tenant_id, monday - timedelta(weeks=weeks_back), config)
        if due <= now:
            return due if due > start else None
    return None


def next_due_at(tenant_id: str, settings: ServiceNowSettings, config: Config, now: datetime | None = None):
    """When the tenant's next weekly export is due (the page and `flask itam schedule` show it)."""
    now = now or utcnow()
    start = max(settings.configured_at or settings.saved_at or now, now)
    monday = _monday(start)
    for weeks_ahead in range(0, 3):
        due = due_in_week(tenant_id, monday + timedelta(weeks=weeks_ahead), config)
        if due > start:
            return due
    return None


def scheduler_tick(config: Config, redis: Redis | None, now: datetime | None = None) -> list[str]:
    """Start every weekly export that is due and not yet claimed for its week; returns what it did, per tenant."""
    now = now or utcnow()
    done: list[str] = []
    due_now: dict[str, datetime] = {}  # one query for every tenant's settings, one for the weeks' claimed slots
    for tenant_id, settings in configured_settings().items():
        due = latest_due(tenant_id, settings, config, now)
        if due is not None:
            due_now[tenant_id] = due
    weeks = {week_key(due) for due in due_now.values()}
    slots = db.session.execute(select(WeeklySlot.tenant_id, WeeklySlot.week).where(WeeklySlot.week.in_(weeks)))
    claimed = {(row.tenant_id, row.week) for row in slots}
    for tenant_id, due in due_now.items():
        week = week_key(due)
        if (tenant_id, week) in claimed:
            continue
        slot = WeeklySlot(tenant_id=tenant_id, week=week, due_at=due, claimed_at=now)
        db.session.add(slot)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()  # another scheduler claimed this week first
            continue
        try:
            run = runs.queue_run(redis, tenant_id, runs.WEEKLY, week=week)
            slot.outcome = runs.QUEUED
        except runs.ExportNotStarted as reason:
            if reason.run is not None:  # created, but the queue did not take it: it ended failed
                run, slot.outcome = reason.run, runs.FAILED
            else:
                run, slot.outcome = runs.record_skipped(tenant_id, week, str(reason), now), runs.SKIPPED
        slot.run_id = run.id
        db.session.commit()
        log.info("weekly export of %s for %s: %s", tenant_id, week, slot.outcome)
        done.append(f"{tenant_id}: {slot.outcome}")
    return done
