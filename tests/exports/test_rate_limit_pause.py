"""A Retry-After longer than ITAM_EXPORT_MAX_WAIT_SECONDS pauses the run and requeues it for then: it stays queued
saying until when, clicks and weekly ticks meanwhile say so, the lost-job recovery leaves it alone, and the scheduler
queues it again when the limit is over; it then finishes, every record sent once."""

from __future__ import annotations

import html
from datetime import datetime, timedelta

from rq import Queue
from sqlalchemy import update

from itam_admin.db import db, utcnow
from itam_admin.exports import runs
from itam_admin.exports.exporter import export_run
from itam_admin.exports.models import ExportRun
from itam_admin.exports.schedule import scheduler_tick
from itam_admin.exports.scheduler_loop import scheduler_pass
from itam_admin.plugin import current_plugin
from tests.conftest import INTEGRATIONS, csrf_token_from
from tests.exports.test_connection_proof import configured_on, weekly_runs
from tests.exports.wire import INSERT_MULTIPLE, Tap

WAITING = "Waiting for ServiceNow's rate limit until"


def test_a_retry_after_beyond_the_longest_wait_pauses_the_run_until_then_and_it_resumes(
    app, client, auth, sandbox, configure_tenant, inventory, run_export, redis_conn
):
    """ServiceNow's rate limit rules count per hour and answer 429 with Retry-After (SERVICENOW-FACTS, Limits and
    faults): a wait of an hour is more than a run may wait (ITAM_EXPORT_MAX_WAIT_SECONDS is 20 here), so instead of
    failing every remaining batch the run waits in the queue until then (issue #14)."""
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    configured_on(app, datetime(2026, 12, 5, 12, 0))
    tap = Tap.on(sandbox)
    tap.aim(INSERT_MULTIPLE, arm=lambda: sandbox.faults.fail_next(1, 429, retry_after=3600))
    before = utcnow()

    run = run_export()

    assert run.status == "queued" and run.message.startswith(WAITING), run.message
    assert before + timedelta(seconds=3590) <= run.resume_at <= utcnow() + timedelta(seconds=3610)
    assert f"{run.resume_at:%Y-%m-%d %H:%M} UTC" in run.message
    assert len(tap.paths(INSERT_MULTIPLE)) == 1  # not every remaining batch tried and failed at once

    auth.login()
    status = client.get(f"{INTEGRATIONS}/servicenow/status").get_json()
    assert status["current"]["status"] == "queued" and status["current"]["message"].startswith(WAITING)
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert 'id="current-run-waiting"' in page and WAITING in html.unescape(page)
    clicked = client.post(
        f"{INTEGRATIONS}/servicenow/export", data={"csrf_token": csrf_token_from(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert WAITING in html.unescape(clicked)
    with app.app_context():
        scheduler_tick(current_plugin().config, current_plugin().redis, now=datetime(2026, 12, 6, 6, 0))
    (weekly,) = weekly_runs(app)
    assert weekly.status == "skipped" and WAITING in weekly.message

    with app.app_context():
        # Long after the Export click's grace, its job long gone: still not lost, only waiting.
        db.session.execute(
            update(ExportRun).where(ExportRun.id == run.id).values(queued_at=utcnow() - timedelta(minutes=10))
        )
        db.session.commit()
        assert runs.recover_lost_runs(current_plugin().redis) == []
        assert export_run(run.id) == "not claimed"  # a stray job does not start it early
        assert db.session.get(ExportRun, run.id).status == "queued"

        db.session.execute(
            update(ExportRun).where(ExportRun.id == run.id).values(resume_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
        scheduler_pass()
        waiting = db.session.get(ExportRun, run.id)
        assert waiting.status == "queued" and waiting.resume_at is None and waiting.job_id
        assert waiting.job_id in Queue("itam-exports", connection=redis_conn).job_ids

        assert export_run(run.id) == "succeeded"
    assert sandbox.wait_idle(20)
    computers = sandbox.records("cmdb_ci_computer")
    assert len(computers) == 5 and len({c["u_source_id"] for c in computers}) == 5


def test_a_rate_limit_that_holds_a_run_back_too_long_ends_it_failed(app, sandbox, configure_tenant, inventory):
    """A limit too small for the export must not hold the tenant's one export slot for ever: past
    runs.RATE_LIMIT_HOLD_AT_MOST since it was queued, the run ends failed saying what to ask ServiceNow's admin."""
    from tests.exports.conftest import ACME_ADMIN

    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    tap = Tap.on(sandbox)
    tap.aim(INSERT_MULTIPLE, arm=lambda: sandbox.faults.fail_next(1, 429, retry_after=13 * 3600))
    with app.app_context():
        created = runs.create_run("acme", "manual", ACME_ADMIN, False)

        assert export_run(created.id) == "failed"
        run = db.session.get(ExportRun, created.id)
        assert run.error_kind == "rate_limited" and "raise the REST API rate limit" in run.message
        assert run.resume_at is None
