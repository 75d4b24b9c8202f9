"""A real `flask itam worker` process outlives Redis going away (idle, and in the middle of an export): it stays up,
says so once, and takes the next export when Redis is back on the same port, restarted empty."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from itam_admin.db import db
from itam_admin.exports.models import ExportRun
from tests.conftest import ROOT, stop_process
from tests.exports.test_interrupted import run_state, wait_for

OUTAGE_LINE = re.compile(r"could not connect to Redis|Redis connection timeout|\(Redis\) cannot be reached")


@pytest.fixture
def app_env(app_env, own_redis):
    app_env["REDIS_URL"] = own_redis.url
    return app_env


@pytest.fixture
def worker(app_env, tmp_path):
    """A worker process with its scheduler (ticking every second); its output goes to a file the test reads."""
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        **app_env,
        "ITAM_INSTANCE_PATH": str(tmp_path / "instance"),
        "ITAM_EXPORT_BATCH_SIZE": "20",
        "ITAM_EXPORT_REQUESTS_IN_FLIGHT": "1",
    }
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "itam", "worker", "--tick-seconds", "1"],
            env=env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )

    def output() -> str:
        return log_path.read_text()

    process.output = output
    try:
        wait_for(lambda: "listening on itam-exports" in output(), seconds=30)
        yield process
    finally:
        stop_process(process, grace_seconds=20)


def start_export(app) -> int:
    from itam_admin.exports.runs import queue_run
    from itam_admin.plugin import current_plugin

    with app.app_context():
        run_id = queue_run(current_plugin().redis, "acme").id
        db.session.remove()
        return run_id


def outage_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if OUTAGE_LINE.search(line)]


def test_an_idle_worker_waits_for_redis_logs_it_once_and_takes_the_next_export(
    app, sandbox, configure_tenant, inventory, own_redis, worker
):
    inventory(computers=30, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    own_redis.stop()
    time.sleep(8)  # long enough for RQ's reconnects at 1, 2 and 4 s and several of its pubsub retries
    assert worker.poll() is None, worker.output()[-3000:]
    assert len(outage_lines(worker.output())) == 1, worker.output()[-3000:]

    own_redis.start()  # the same port, empty
    run_id = start_export(app)
    status, sent, message = wait_for(lambda: (s := run_state(app, run_id))[0] not in ("queued", "running") and s)
    assert (status, sent) == ("succeeded", 30), message
    assert worker.poll() is None
    assert len(outage_lines(worker.output())) == 1
    assert "answers again" in worker.output()


def test_redis_going_away_during_an_export_neither_stops_the_worker_nor_the_export(
    app, sandbox, configure_tenant, inventory, own_redis, worker
):
    inventory(computers=300, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    sandbox.faults.set_latency(100)  # 15 batches of 20: the export takes a couple of seconds
    first = start_export(app)
    # Once it is sending: the access token it got at the start is in hand (the token cache lives in Redis too).
    wait_for(lambda: run_state(app, first)[1] >= 40)
    own_redis.stop()
    status, sent, message = wait_for(lambda: (s := run_state(app, first))[0] not in ("queued", "running") and s)
    assert (status, sent) == ("succeeded", 300), message  # the export needs only the database and ServiceNow
    time.sleep(4)  # the work horse has ended and reported to a Redis that is not there
    assert worker.poll() is None, worker.output()[-3000:]

    own_redis.start()
    sandbox.faults.set_latency(0)
    with app.app_context():
        from demo_portal.demo_data import mutate_inventory

        mutate_inventory("acme", change_fraction=0.1, delete=0, add=0, data_types=("hardware_inventory",))
    second = start_export(app)
    status, sent, message = wait_for(lambda: (s := run_state(app, second))[0] not in ("queued", "running") and s)
    assert status == "succeeded" and sent > 0, message
    assert worker.poll() is None
    assert len(outage_lines(worker.output())) == 1, worker.output()[-3000:]
    with app.app_context():
        assert db.session.query(ExportRun).filter(ExportRun.status == "succeeded").count() == 2
