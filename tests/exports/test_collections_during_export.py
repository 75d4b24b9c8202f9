"""While an export runs, Python's cyclic garbage collector runs rarely (issue #15: with the default thresholds it
took 0.23-0.36 s of the main thread's 1.3-1.7 s of CPU per 100,000 records); the worker's thresholds come back
afterwards, whatever the run's outcome, so a host process that runs exports inline keeps its own."""

from __future__ import annotations

import gc

import pytest


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_EXPORT_BATCH_SIZE"] = "20"
    app_env["ITAM_EXPORT_READ_BACK_WAIT_SECONDS"] = "5"
    return app_env


@pytest.fixture
def thresholds():
    previous = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # Python's defaults, whatever the test runner set
    yield (700, 10, 10)
    gc.set_threshold(*previous)


def test_an_export_collects_rarely_while_it_sends_and_gives_the_process_its_thresholds_back(
    app, sandbox, configure_tenant, inventory, run_export, monkeypatch, thresholds
):
    from itam_admin.exports import exporter

    seen: list[tuple[int, int, int]] = []
    send = exporter.send_batch

    def watched(*args, **kwargs):
        seen.append(gc.get_threshold())
        return send(*args, **kwargs)

    monkeypatch.setattr(exporter, "send_batch", watched)
    inventory(computers=60, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))

    run = run_export(full=True)

    assert run.status == "succeeded", run.message
    assert len(seen) == 3 and set(seen) == {exporter.EXPORT_GC_THRESHOLDS}
    assert gc.get_threshold() == thresholds


def test_a_run_that_fails_unexpectedly_gives_the_process_its_thresholds_back(
    app, sandbox, configure_tenant, inventory, run_export, monkeypatch, thresholds
):
    from itam_admin.exports import exporter

    def broken(self):
        raise RuntimeError("a bug in planning")

    monkeypatch.setattr(exporter.Exporter, "export", broken)
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))

    run = run_export(full=True)

    assert run.status == "failed" and run.error_kind == "internal", run.message
    assert gc.get_threshold() == thresholds
