"""A simulated Sunday with real processes: two schedulers ticking at the same moments (the test sets the clock with
`itam schedule-tick --now`) and three workers; each tenant gets exactly one weekly outcome."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import select

from itam_admin.db import db
from itam_admin.exports.models import ExportRun, WeeklySlot
from tests.conftest import ROOT
from tests.exports.test_schedule import SATURDAY, SUNDAY_MORNING, set_configured_at


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "wsgi", "itam", *args]


def run_together(commands: list[list[str]], env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    processes = [
        subprocess.Popen(c, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    results = []
    for process, args in zip(processes, commands, strict=True):
        out, err = process.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    return results


def test_two_schedulers_and_three_workers_over_a_simulated_sunday(
    app, app_env, tmp_path, sandbox, configure_tenant, inventory
):
    inventory("acme", computers=450, installs=0, contracts=0)
    configure_tenant("acme", types=("hardware_inventory",))
    configure_tenant("globex", types=())  # exports disabled: recorded as skipped
    set_configured_at(app, "acme", SATURDAY)
    set_configured_at(app, "globex", SATURDAY)
    env = {**os.environ, **app_env, "ITAM_INSTANCE_PATH": str(tmp_path / "instance")}

    # Sunday 02:30 to 05:30, every 30 minutes, two schedulers at each moment.
    moments = [SUNDAY_MORNING - timedelta(minutes=30) + timedelta(minutes=30 * n) for n in range(7)]
    for moment in moments:
        tick = command("schedule-tick", "--now", moment.isoformat(timespec="minutes"))
        for result in run_together([tick, tick], env):
            assert result.returncode == 0, result.stderr

    workers = run_together([command("worker", "--burst", "--no-scheduler")] * 3, env)
    assert all(result.returncode == 0 for result in workers), [r.stderr[-500:] for r in workers]

    with app.app_context():
        runs = list(db.session.scalars(select(ExportRun).order_by(ExportRun.tenant_id)))
        slots = list(db.session.scalars(select(WeeklySlot)))
        assert [(r.tenant_id, r.trigger, r.status) for r in runs] == [
            ("acme", "weekly", "succeeded"),
            ("globex", "weekly", "skipped"),
        ]
        assert "Choose at least one data type" in runs[1].message
        assert runs[0].data_types[0].sent == 450
        assert {slot.week for slot in slots} == {"2026-W49"} and len(slots) == 2
    assert sandbox.wait_idle(20)
    assert len(sandbox.records("cmdb_ci_computer")) == 450
    assert len(sandbox.records("sys_import_set")) == 3  # 450 records in batches of 200, each posted once
