"""A worker killed mid-run: the run ends failed as interrupted, and the next export completes the data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from itam_admin.db import db
from itam_admin.exports.models import ExportRun
from tests.conftest import ROOT, stop_process


def wait_for(predicate, seconds: float = 60, step: float = 0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


def run_state(app, run_id):
    with app.app_context():
        db.session.expire_all()
        run = db.session.get(ExportRun, run_id)
        return run.status, sum(dt.sent for dt in run.data_types), run.message


def test_sigkill_of_the_work_horse_ends_interrupted_and_the_next_run_completes(
    app, app_env, tmp_path, sandbox, configure_tenant, inventory, run_export
):
    from itam_admin.exports.runs import queue_run
    from itam_admin.plugin import current_plugin

    inventory(computers=600, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    sandbox.faults.set_latency(300)  # 30 batches take 9 s: time to find and kill the horse after the first 100
    env = {
        **os.environ,
        **app_env,
        "ITAM_INSTANCE_PATH": str(tmp_path / "instance"),
        "ITAM_EXPORT_BATCH_SIZE": "20",
        "ITAM_EXPORT_REQUESTS_IN_FLIGHT": "1",
        "ITAM_INTERRUPTED_AFTER_SECONDS": "8",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "itam", "worker", "--tick-seconds", "1"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with app.app_context():
            run_id = queue_run(current_plugin().redis, "acme").id
        wait_for(lambda: run_state(app, run_id)[0] == "running" and run_state(app, run_id)[1] >= 100)
        horses = psutil.Process(worker.pid).children()
        assert horses, "no work horse found"
        for horse in horses:
            os.kill(horse.pid, signal.SIGKILL)
        status, sent_before, message = wait_for(
            lambda: (state := run_state(app, run_id))[0] == "failed" and state, seconds=40
        )
        assert "interrupted" in message
        assert sent_before < 600
    finally:
        stop_process(worker, grace_seconds=20)

    sandbox.faults.set_latency(0)
    assert sandbox.wait_idle(20)
    inserted_before = len(sandbox.records("cmdb_ci_computer"))
    second = run_export()
    assert second.status == "succeeded", second.message
    assert sandbox.wait_idle(20)
    computers = sandbox.records("cmdb_ci_computer")
    assert len(computers) == 600 and len({c["u_source_id"] for c in computers}) == 600
    # Nothing sent twice overall beyond the batches that were in flight when the horse died.
    assert second.data_types[0].sent <= 600 - sent_before + 20
    assert inserted_before >= sent_before
