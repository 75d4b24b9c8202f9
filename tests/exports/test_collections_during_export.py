"""While an export runs, Python's cyclic garbage collector runs rarely (issue #15: with the default thresholds it
took 0.23-0.36 s of the main thread's 1.3-1.7 s of CPU per 100,000 records) and the interpreter switches threads
sooner; the process's own settings come back once the last export running in it ends, whatever the run's outcome,
so a host process that runs exports in threads keeps its own."""

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


def test_exports_overlapping_in_threads_give_the_process_its_settings_back_when_the_last_one_ends(thresholds):
    """Two exports in threads of one process, the first ending while the second still runs: the second keeps the
    export settings, and the process gets its own back only when the second ends (a save-and-restore per export
    would leave the export settings in place for good)."""
    import sys
    import threading

    from itam_admin.exports.exporter import EXPORT_GC_THRESHOLDS, SENDER_SWITCH_INTERVAL, WHILE_EXPORTING

    interval = sys.getswitchinterval()
    first_in, first_out, second_done = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple] = {}

    def first():
        with WHILE_EXPORTING.applied():
            first_in.set()
            first_out.wait(5)

    def second():
        first_in.wait(5)
        with WHILE_EXPORTING.applied():
            first_out.set()
            worker.join(5)  # the first export has ended
            seen["after the first ended"] = (gc.get_threshold(), sys.getswitchinterval())
        second_done.set()

    worker = threading.Thread(target=first)
    other = threading.Thread(target=second)
    worker.start()
    other.start()
    other.join(10)

    assert second_done.is_set()
    assert seen["after the first ended"] == (EXPORT_GC_THRESHOLDS, SENDER_SWITCH_INTERVAL)
    assert (gc.get_threshold(), sys.getswitchinterval()) == (thresholds, interval)


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
