"""A batch ServiceNow refuses as too large is split, whatever status ServiceNow gives that refusal."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("status", [400, 413, 500])
def test_a_batch_refused_as_a_large_rest_payload_is_split_and_every_record_arrives(
    app, sandbox, configure_tenant, inventory, run_export, status
):
    """ServiceNow refuses a body over glide.rest.max_content_length (10 MB by default) with "Exception while reading
    request" / "Rejected large REST payload with content-length = N bytes" (KB0747638); the KB gives no status, and
    practitioners saw 400 and 500 as well as 413. The sandbox answers that body with the status under test."""
    plugin = app.extensions["itam_admin"]
    plugin.config = plugin.config.__class__(**{**plugin.config.__dict__, "batch_size": 200})
    inventory(computers=120, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    sandbox.state.settings.max_payload_bytes = 20_000  # a 120-record batch is ~100 kB: split down to ~20 records
    sandbox.state.settings.oversize_status = status
    run = run_export()
    assert run.data_types[0].failed == 0, run.message
    assert sandbox.wait_idle(20)
    assert len(sandbox.records("cmdb_ci_computer")) == 120
    assert sandbox.state.metrics.batches_received["u_itam_hardware_inventory"] > 1
