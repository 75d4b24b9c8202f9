"""A queued run whose RQ job is gone (Redis restarted empty) no longer blocks its tenant: the scheduler pass queues it
again once, a burst worker completes it, a second loss ends it failed with a reason, and Export works again."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from rq import Queue

from itam_admin.db import db, utcnow
from itam_admin.exports.models import ExportRun
from tests.conftest import INTEGRATIONS, ROOT
from tests.exports.test_jobs import click_export


@pytest.fixture
def app_env(app_env, own_redis):
    app_env["REDIS_URL"] = own_redis.url  # a Redis this test may restart
    return app_env


def queued_run(app, client) -> int:
    response = click_export(client)
    assert response.status_code == 302
    with app.app_context():
        run = db.session.query(ExportRun).order_by(ExportRun.id.desc()).first()
        assert run.status == "queued"
        return run.id


def minutes_pass(app, run_id: int, minutes: float) -> None:
    """The scheduler looks at a run only once it has been queued for a while (the Export button commits the run a
    moment before it enqueues the job): move its queue time back instead of sleeping."""
    with app.app_context():
        run = db.session.get(ExportRun, run_id)
        run.queued_at = utcnow() - timedelta(minutes=minutes)
        db.session.commit()


def scheduler_pass(app) -> None:
    from itam_admin.exports.scheduler_loop import scheduler_pass as one_pass

    with app.app_context():
        one_pass()
        db.session.remove()


def run_of(app, run_id: int) -> ExportRun:
    with app.app_context():
        run = db.session.get(ExportRun, run_id)
        db.session.expunge(run)
        return run


def job_ids(redis_url: str) -> list[str]:
    import redis

    return Queue("itam-exports", connection=redis.Redis.from_url(redis_url)).job_ids


def burst_worker(app_env, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, **app_env, "ITAM_INSTANCE_PATH": str(tmp_path / "instance")}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "itam", "worker", "--burst", "--no-scheduler"]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)


def export_button_says(client) -> str:
    click_export(client)
    return client.get(INTEGRATIONS).get_data(as_text=True)


def test_a_run_whose_job_redis_lost_is_queued_again_and_completed(
    app, app_env, tmp_path, client, auth, sandbox, configure_tenant, inventory, own_redis
):
    inventory(computers=12, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    auth.login("admin@acme.example")
    run_id = queued_run(app, client)
    assert job_ids(own_redis.url) == [f"itam-export-{run_id}"]

    own_redis.restart()  # no persistence: the queue and the job are gone, the run still says queued
    assert job_ids(own_redis.url) == []
    assert "An export is already queued or running" in export_button_says(client)

    minutes_pass(app, run_id, 2)
    scheduler_pass(app)
    assert job_ids(own_redis.url) == [f"itam-export-{run_id}-2"]
    assert run_of(app, run_id).status == "queued"
    scheduler_pass(app)  # a second pass finds the new job waiting and leaves it alone
    assert job_ids(own_redis.url) == [f"itam-export-{run_id}-2"]

    worker = burst_worker(app_env, tmp_path)
    assert worker.returncode == 0, worker.stderr[-2000:]
    run = run_of(app, run_id)
    assert run.status == "succeeded", run.message
    assert sandbox.wait_idle(20)
    assert len(sandbox.records("cmdb_ci_computer")) == 12

    page = export_button_says(client)
    assert "An export is already queued or running" not in page and "Export queued" in page


def test_a_run_lost_twice_ends_failed_with_the_reason_and_the_tenant_can_export_again(
    app, client, auth, configure_tenant, inventory, own_redis
):
    inventory(computers=3, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    auth.login("admin@acme.example")
    run_id = queued_run(app, client)
    own_redis.restart()
    minutes_pass(app, run_id, 2)
    scheduler_pass(app)
    assert run_of(app, run_id).status == "queued"

    own_redis.restart()  # lost again before any worker took it
    scheduler_pass(app)
    run = run_of(app, run_id)
    assert run.status == "failed" and run.error_kind == "queue_lost"
    assert run.message.startswith("The export queue lost this export") and "start it again" in run.message

    status = client.get(f"{INTEGRATIONS}/servicenow/status").get_json()
    assert status["current"] is None and "lost this export" in status["last_completed"]["message"]
    page = export_button_says(client)
    assert "An export is already queued or running" not in page and "Export queued" in page
    assert len(job_ids(own_redis.url)) == 1


def test_a_redis_that_does_not_answer_is_not_taken_for_a_lost_job(app, client, auth, configure_tenant, own_redis):
    configure_tenant(types=("hardware_inventory",))
    auth.login("admin@acme.example")
    run_id = queued_run(app, client)
    minutes_pass(app, run_id, 10)
    own_redis.stop()
    scheduler_pass(app)  # does not raise, and decides nothing
    run = run_of(app, run_id)
    assert run.status == "queued" and run.job_id is None
    own_redis.start()


def test_a_run_no_worker_takes_for_a_day_ends_failed_and_unblocks_its_tenant(
    app, client, auth, configure_tenant, own_redis
):
    configure_tenant(types=("hardware_inventory",))
    auth.login("admin@acme.example")
    run_id = queued_run(app, client)
    minutes_pass(app, run_id, 23 * 60)
    scheduler_pass(app)
    assert run_of(app, run_id).status == "queued"  # waiting for a worker, not lost

    minutes_pass(app, run_id, 25 * 60)
    scheduler_pass(app)
    run = run_of(app, run_id)
    assert run.status == "failed" and run.error_kind == "queue_stalled"
    assert "No export worker started this export within a day" in run.message
    assert "An export is already queued or running" not in export_button_says(client)
