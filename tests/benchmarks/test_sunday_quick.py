"""The simulated Sunday's quick mode (6 tenants of 500 installs, 2 workers, PostgreSQL) runs end to end and its
figures are present and consistent with each other. Their values are not checked: they depend on the machine;
benchmarks/README.md has the real figures."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from benchmarks.sunday import DATA_TYPES, INSTALLS_PER_COMPUTER, QUICK
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_quick_sunday_runs_every_tenant_once_and_its_figures_add_up(tmp_path: Path) -> None:
    out = tmp_path / "sunday.json"
    # Its own process, as an operator runs it: it starts its own workers, Redis, sandbox and PostgreSQL database.
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.sunday", "--quick", "--json-out", str(out), "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "due per tenth of window" in completed.stdout
    report = json.loads(out.read_text())
    tenants, records = QUICK["tenants"], QUICK["records"]
    computers = records // INSTALLS_PER_COMPUTER
    assert (report["tenants"], report["records"], report["workers"]) == (tenants, records, QUICK["workers"])
    assert report["setup"]["generate"]["installed_applications"] == tenants * records
    assert report["setup"]["generate"]["hardware_inventory"] == tenants * computers

    sunday = report["sunday"]
    runs = report["tenant_runs"]
    # Every tenant got exactly one weekly run, started by the scheduler and finished.
    assert sorted(run["tenant"] for run in runs) == [f"tenant-{n:03d}" for n in range(1, tenants + 1)]
    assert all(run["outcome"] == "queued" and run["finished_at"] for run in runs)
    assert sum(sunday["statuses"].values()) == tenants
    # Every record went out once; the sandbox's transforms are instant and the read-back waits, so none is left
    # unconfirmed and each run ends succeeded.
    assert sunday["records_sent_by_type"] == {
        "installed_applications": tenants * records,
        "hardware_inventory": tenants * computers,
    }
    assert set(sunday["records_sent_by_type"]) == set(DATA_TYPES)
    assert sunday["records_sent"] == report["sandbox"]["records_received"] == tenants * (records + computers)
    assert sunday["statuses"] == {"succeeded": tenants}, sunday["messages"]
    assert sunday["records_confirmed"] == sunday["records_sent"] and sunday["records_failed"] == 0

    # The spread: every due time falls in the window, the buckets hold every tenant, the statistics match them.
    due = sunday["due_spread"]
    assert len(due["buckets"]) == 10 and sum(due["buckets"]) == tenants and due["outside_window"] == 0
    assert due["expected_per_bucket"] == tenants / 10
    assert (due["max"], due["min"]) == (max(due["buckets"]), min(due["buckets"]))
    assert 0 <= due["chi_square_p"] <= 1
    started = sunday["start_spread"]
    assert sum(started["buckets"]) + started["outside_window"] == tenants

    # Timings are there and ordered: a run starts after it was due and queued, and the wall time covers the runs.
    assert sunday["wall_seconds"] > 0 and sunday["wall_seconds"] >= sunday["run_seconds"]["max"] > 0
    assert sunday["start_delay_real_seconds"]["max"] >= sunday["queue_wait_real_seconds"]["max"] >= 0
    assert sunday["start_delay_real_seconds"]["max"] >= sunday["start_delay_real_seconds"]["median"] > 0
    for run in runs:
        due, claimed, queued, started_at, finished = (
            datetime.fromisoformat(run[key])
            for key in ("due_at", "claimed_at", "queued_at", "started_at", "finished_at")
        )
        assert due <= claimed  # the simulated clock
        assert queued <= started_at <= finished  # the real clock

    cpu = report["cpu"]
    assert cpu["workers_horses_seconds"] > 0  # the exports ran in work horses the workers forked
    assert cpu["workers_seconds"] == pytest.approx(cpu["workers_own_seconds"] + cpu["workers_horses_seconds"])
    assert cpu["workers_per_100k"] == pytest.approx(cpu["workers_seconds"] / sunday["records_sent"] * 100_000)
    assert cpu["postgres_backends_seconds"] > 0 and cpu["sandbox_seconds"] > 0
    assert report["peak"]["running_runs"] >= 1
    assert report["scheduler"]["passes"] > 0
