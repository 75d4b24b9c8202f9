"""The Export button through RQ: a real Redis, a real worker process, one run per tenant, and no secret in jobs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from itam_admin.db import db
from itam_admin.exports.models import ExportRun
from tests.conftest import INTEGRATIONS, ROOT, csrf_token_from
from tests.exports.wire import on_first_batch

EXPORT = f"{INTEGRATIONS}/servicenow/export"


def click_export(client, full: bool = False):
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    data = {"csrf_token": csrf_token_from(page)}
    if full:
        data["full"] = "y"
    return client.post(EXPORT, data=data)


def run_worker(app_env, tmp_path: Path, burst: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **app_env, "ITAM_INSTANCE_PATH": str(tmp_path / "instance")}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "itam", "worker", "--no-scheduler"]
    if burst:
        command.append("--burst")
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_export_button_queues_a_job_with_ids_only_and_a_real_worker_runs_it(
    app, app_env, tmp_path, client, auth, sandbox, configure_tenant, inventory, redis_conn
):
    inventory(computers=30, installs=60, contracts=5)
    token = configure_tenant()
    auth.login("admin@acme.example")
    started = time.monotonic()
    response = click_export(client)
    assert response.status_code == 302 and time.monotonic() - started < 5
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert "Export queued" in page and 'id="current-run"' in page
    assert re.search(r'<button[^>]*id="export-button"[^>]*disabled', page)

    from rq import Queue

    jobs = Queue("itam-exports", connection=redis_conn).jobs
    assert len(jobs) == 1
    with app.app_context():
        run = db.session.scalars(select(ExportRun)).one()
        assert jobs[0].args == (run.id,) and run.status == "queued"

    worker = run_worker(app_env, tmp_path)
    assert worker.returncode == 0, worker.stderr
    status = client.get(f"{INTEGRATIONS}/servicenow/status").get_json()
    assert status["current"] is None
    last = status["last_completed"]
    assert last["status"] == "succeeded" and last["trigger"] == "manual" and last["triggered_by"] == "Alice Admin"
    assert {k: (v["total"], v["sent"], v["failed"]) for k, v in last["data_types"].items()} == {
        "hardware_inventory": (30, 30, 0),
        "contracts": (5, 5, 0),
        "installed_applications": (60, 60, 0),
    }
    assert sandbox.wait_idle(20)
    assert len(sandbox.records("cmdb_ci_computer")) == 30
    assert len(sandbox.records("cmdb_sam_sw_install")) == 60
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert "Succeeded" in page and "manually by Alice Admin" in page

    # No secret in the worker's output, in Redis, or in any run record.
    secrets = [token, "default-client-secret"]
    dumped = b" ".join(redis_conn.dump(key) or b"" for key in redis_conn.keys("*"))
    for secret in secrets:
        assert secret not in worker.stdout + worker.stderr
        assert secret.encode() not in dumped
        assert secret not in str(last)


def test_two_rapid_clicks_give_one_run(app, client, auth, configure_tenant, inventory):
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    auth.login("admin@acme.example")
    click_export(client)
    response = click_export(client)
    assert response.status_code == 302
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert "An export is already queued or running" in page
    with app.app_context():
        assert db.session.query(ExportRun).count() == 1


def test_two_workers_never_run_the_same_run_twice(
    app, app_env, tmp_path, client, auth, sandbox, configure_tenant, inventory, redis_conn
):
    inventory(computers=20, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    auth.login("admin@acme.example")
    click_export(client)
    with app.app_context():
        run_id = db.session.scalars(select(ExportRun.id)).one()
    from rq import Queue

    # The same run's job twice on the queue (as a retry or a duplicate would put it), and two workers at once.
    Queue("itam-exports", connection=redis_conn).enqueue("itam_admin.exports.jobs.export_job", run_id)
    env = {**os.environ, **app_env, "ITAM_INSTANCE_PATH": str(tmp_path / "instance")}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "itam", "worker", "--no-scheduler", "--burst"]
    workers = [
        subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    for worker in workers:
        worker.communicate(timeout=180)
    assert sandbox.wait_idle(20)
    with app.app_context():
        run = db.session.get(ExportRun, run_id)
        assert run.status == "succeeded"
        assert run.data_types[0].sent == 20
    assert len(sandbox.records("sys_import_set")) == 1  # 20 records: one batch, posted once


def test_redis_down_when_exporting_gives_a_clear_message_and_no_run(app, client, auth, configure_tenant, inventory):
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    from redis import Redis

    app.extensions["itam_admin"]._redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    auth.login("admin@acme.example")
    click_export(client)
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert "The export queue (Redis) cannot be reached" in page
    with app.app_context():
        assert db.session.query(ExportRun).count() == 0


def test_another_tenant_cannot_reach_runs_status_or_history(app, client, auth, configure_tenant, inventory, run_export):
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    run = run_export()
    auth.login("admin@acme.example")
    assert client.get(f"{INTEGRATIONS}/servicenow/runs/{run.id}").status_code == 200
    auth.logout()
    auth.login("admin@globex.example")
    assert client.get(f"{INTEGRATIONS}/servicenow/runs/{run.id}").status_code == 404
    assert client.get(f"{INTEGRATIONS}/servicenow/runs/{run.id}/failed-records.csv").status_code == 404
    status = client.get(f"{INTEGRATIONS}/servicenow/status").get_json()
    assert status["last_completed"] is None and status["current"] is None
    assert f"#{run.id}" not in client.get(f"{INTEGRATIONS}/servicenow/runs").get_data(as_text=True)


def test_servicenow_error_text_is_escaped_and_failed_records_download_as_csv(
    app, client, auth, sandbox, configure_tenant, inventory, run_export
):
    config = app.extensions["itam_admin"].config
    app.extensions["itam_admin"].config = config.__class__(
        **{**config.__dict__, "max_retries": 0, "requests_in_flight": 1}
    )
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    on_first_batch(sandbox, lambda: sandbox.faults.fail_next(1, 500, detail='<img src=x onerror="alert(1)">'))
    run = run_export()
    assert run.status == "failed"
    auth.login("admin@acme.example")
    page = client.get(f"{INTEGRATIONS}/servicenow/runs/{run.id}").get_data(as_text=True)
    assert "&lt;img src=x onerror=" in page and '<img src=x onerror="alert(1)">' not in page
    csv_text = client.get(f"{INTEGRATIONS}/servicenow/runs/{run.id}/failed-records.csv").get_data(as_text=True)
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("data_type,batch_number,error") and len(lines) == 6
