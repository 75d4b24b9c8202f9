"""Export runs against the ServiceNow sandbox over real HTTP: complete, exactly once, and every fault's outcome."""

from __future__ import annotations

import pytest

from tests.exports.conftest import counts
from tests.exports.wire import on_first_batch

TARGETS = {
    "hardware_inventory": "cmdb_ci_computer",
    "contracts": "ast_contract",
    "installed_applications": "cmdb_sam_sw_install",
}


def test_manual_export_arrives_complete_exactly_once_and_installs_are_linked(
    sandbox, configure_tenant, inventory, run_export
):
    inventory(computers=40, installs=120, contracts=10)
    configure_tenant()
    run = run_export()
    assert run.status == "succeeded", run.message
    assert counts(run) == {"hardware_inventory": (40, 0), "contracts": (10, 0), "installed_applications": (120, 0)}
    assert sandbox.wait_idle(20)
    computers = sandbox.records("cmdb_ci_computer")
    installs = sandbox.records("cmdb_sam_sw_install")
    assert len(computers) == 40 and len(sandbox.records("ast_contract")) == 10 and len(installs) == 120
    assert len({c["u_source_id"] for c in computers}) == 40
    computer_ids = {c["sys_id"] for c in computers}
    assert all(install["installed_on"] in computer_ids for install in installs)
    # Hardware first, then contracts, then installs (installs refer to computers).
    import_sets = sandbox.records("sys_import_set")
    tables = [s["table_name"] for s in sorted(import_sets, key=lambda s: s["number"])]
    firsts = [
        tables.index(t) for t in ("u_itam_hardware_inventory", "u_itam_contracts", "u_itam_installed_applications")
    ]
    assert firsts == sorted(firsts)


def test_only_chosen_data_types_are_sent(sandbox, configure_tenant, inventory, run_export):
    inventory()
    configure_tenant(types=("contracts",))
    run = run_export()
    assert run.status == "succeeded"
    assert sandbox.wait_idle(20)
    assert len(sandbox.records("ast_contract")) == 10
    assert sandbox.records("cmdb_ci_computer") == []


def test_servicenow_side_counts_are_read_back(sandbox, configure_tenant, inventory, run_export):
    inventory(computers=450, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    run = run_export()
    hardware = run.data_types[0]
    assert hardware.sent == 450
    # The run waits for ServiceNow's asynchronous transform of its 3 import sets, then reads what it did.
    assert (hardware.sn_import_sets, hardware.sn_import_sets_read, hardware.sn_import_sets_complete) == (3, 3, 3)
    # Computers go through IRE, so ServiceNow counts their rows ignored ("Applying IRE to Import Sets"); the run
    # confirms each from the row's comment.
    assert (hardware.sn_inserts, hardware.sn_ignored, hardware.sn_errors) == (0, 450, 0)
    assert (hardware.confirmed, hardware.unconfirmed, run.status) == (450, 0, "succeeded")


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda s: on_first_batch(s, lambda: s.faults.fail_next(3, 503)), id="5xx"),
        pytest.param(
            lambda s: on_first_batch(s, lambda: s.faults.fail_next(2, 429, retry_after=1)), id="429-retry-after"
        ),
        pytest.param(lambda s: on_first_batch(s, lambda: s.faults.drop_next(3)), id="dropped-connections"),
        pytest.param(lambda s: s.faults.set_latency(30), id="latency"),
    ],
)
def test_transient_faults_are_retried_and_nothing_is_lost_or_sent_twice(
    sandbox, configure_tenant, inventory, run_export, fault
):
    inventory(computers=60, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    fault(sandbox)
    run = run_export()
    assert run.status == "succeeded", run.message
    assert counts(run)["hardware_inventory"] == (60, 0)
    assert sandbox.wait_idle(20)
    computers = sandbox.records("cmdb_ci_computer")
    assert len(computers) == 60 and len({c["u_source_id"] for c in computers}) == 60


def test_a_batch_that_keeps_failing_is_recorded_and_the_run_goes_on(
    app, sandbox, configure_tenant, inventory, run_export
):
    app.extensions["itam_admin"].config = app.extensions["itam_admin"].config.__class__(
        **{**app.extensions["itam_admin"].config.__dict__, "batch_size": 20, "max_retries": 1, "requests_in_flight": 1}
    )
    inventory(computers=60, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    # One batch: first try and its retry.
    on_first_batch(sandbox, lambda: sandbox.faults.fail_next(2, 500, message="Transform <b>exploded</b>"))
    run = run_export()
    assert run.status == "partially_succeeded"
    assert counts(run)["hardware_inventory"] == (40, 20)
    assert len(run.failed_batches) == 1 and run.failed_batches[0].record_count == 20
    assert "exploded" in (run.failed_batches[0].detail or "")


def test_a_payload_too_large_splits_the_batch(sandbox, configure_tenant, inventory, run_export):
    inventory(computers=50, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    sandbox.state.settings.max_payload_bytes = 30_000  # a 50-record batch is ~40 kB
    run = run_export()
    assert run.status == "succeeded", run.message
    assert sandbox.wait_idle(20)
    assert len(sandbox.records("cmdb_ci_computer")) == 50


def test_a_revoked_token_fails_the_run_with_what_to_do(sandbox, configure_tenant, inventory, run_export):
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    sandbox.revoke_tokens(everything=True)
    run = run_export()
    assert run.status == "failed"
    assert "Generate a new token in ServiceNow and paste it in Token" in run.message
    assert "127.0.0.1" in run.message


def test_a_user_without_admin_role_fails_the_run_with_403(sandbox, configure_tenant, inventory, run_export):
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",), user="itil")
    run = run_export()
    assert run.status == "failed"
    assert run.error_kind == "forbidden"
    assert sandbox.records("cmdb_ci_computer") == []


def test_an_unreachable_instance_fails_the_run_clearly(app, configure_tenant, inventory, run_export, sandbox):
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    sandbox.stop()
    run = run_export()
    assert run.status == "failed"
    assert run.error_kind == "connection_refused"
    assert "127.0.0.1" in run.message and "Traceback" not in run.message
