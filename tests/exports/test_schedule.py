"""The weekly schedule over a simulated Sunday: the clock is the test's, the database makes each export start once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from sqlalchemy import select

from itam_admin.db import db
from itam_admin.exports.models import ExportRun, WeeklySlot
from itam_admin.exports.schedule import next_due_at, scheduler_tick, slot_offset
from itam_admin.plugin import current_plugin
from itam_admin.settings.store import load_settings

SATURDAY = datetime(2026, 12, 5, 12, 0)
SUNDAY_MORNING = datetime(2026, 12, 6, 3, 0)
SUNDAY_LATE = datetime(2026, 12, 6, 6, 0)


def set_configured_at(app, tenant: str, when: datetime) -> None:
    from itam_admin.settings.models import ComplianceTenantSetting
    from itam_admin.settings.values import CONFIGURED_AT

    with app.app_context():
        row = db.session.scalar(
            select(ComplianceTenantSetting).where(
                ComplianceTenantSetting.tenant_id == tenant, ComplianceTenantSetting.name == CONFIGURED_AT
            )
        )
        row.value = when.isoformat()
        db.session.commit()


def weekly_runs(app) -> list[ExportRun]:
    with app.app_context():
        runs = list(db.session.scalars(select(ExportRun).where(ExportRun.trigger == "weekly").order_by(ExportRun.id)))
        db.session.expunge_all()
        return runs


def test_first_weekly_export_is_the_sunday_after_saving_then_every_sunday(app, configure_tenant):
    configure_tenant()
    set_configured_at(app, "acme", SATURDAY)
    with app.app_context():
        config = current_plugin().config
        settings = load_settings("acme")
        due = next_due_at("acme", settings, config, now=SATURDAY)
        assert due.weekday() == 6 and due.date() == SUNDAY_MORNING.date()
        assert SUNDAY_MORNING <= due < SUNDAY_MORNING + timedelta(minutes=config.weekly_window_minutes)
        following = next_due_at("acme", settings, config, now=due + timedelta(seconds=1))
        assert following - due == timedelta(days=7)


def test_two_schedulers_start_one_weekly_run_per_tenant(app, configure_tenant, redis_conn):
    configure_tenant("acme")
    configure_tenant("globex")
    set_configured_at(app, "acme", SATURDAY)
    set_configured_at(app, "globex", SATURDAY)

    with app.app_context():
        assert scheduler_tick(current_plugin().config, current_plugin().redis, now=SATURDAY) == []
    results = []

    def scheduler() -> None:
        with app.app_context():
            for minute in range(0, 181, 30):
                results.extend(
                    scheduler_tick(
                        current_plugin().config, current_plugin().redis, now=SUNDAY_MORNING + timedelta(minutes=minute)
                    )
                )

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs = weekly_runs(app)
    assert sorted(run.tenant_id for run in runs) == ["acme", "globex"]
    assert all(run.status == "queued" for run in runs)
    from rq import Queue

    assert len(Queue("itam-exports", connection=redis_conn).jobs) == 2


def test_a_disabled_tenant_is_recorded_as_skipped_with_the_reason(app, client, configure_tenant):
    configure_tenant(types=())
    set_configured_at(app, "acme", SATURDAY)
    with app.app_context():
        scheduler_tick(current_plugin().config, current_plugin().redis, now=SUNDAY_LATE)
    (run,) = weekly_runs(app)
    assert run.status == "skipped" and "Choose at least one data type" in run.message


def test_a_missed_week_runs_once_when_the_scheduler_comes_back(app, configure_tenant):
    configure_tenant()
    set_configured_at(app, "acme", SATURDAY - timedelta(weeks=3))
    with app.app_context():
        # Down for three Sundays; back on Tuesday: one run for the latest missed week, not three.
        config = current_plugin().config
        back = SUNDAY_LATE + timedelta(days=2)
        scheduler_tick(config, current_plugin().redis, now=back)
        scheduler_tick(config, current_plugin().redis, now=back + timedelta(hours=1))
        slots = db.session.scalars(select(WeeklySlot)).all()
    assert len(weekly_runs(app)) == 1 and len(slots) == 1


def test_tenant_slots_spread_over_the_window_and_stay_put():
    offsets = [slot_offset(f"tenant-{n}", 120) for n in range(2000)]
    assert all(timedelta(0) <= offset < timedelta(minutes=120) for offset in offsets)
    per_ten_minutes = [0] * 12
    for offset in offsets:
        per_ten_minutes[int(offset.total_seconds() // 600)] += 1
    assert max(per_ten_minutes) < 2000 / 12 * 1.3 and min(per_ten_minutes) > 2000 / 12 * 0.7
    assert slot_offset("tenant-7", 120) == slot_offset("tenant-7", 120)


def test_schedule_command_lists_the_next_export(app, runner, configure_tenant):
    configure_tenant()
    result = runner.invoke(args=["itam", "schedule"])
    assert result.exit_code == 0
    assert "acme: next export Sun" in result.output
