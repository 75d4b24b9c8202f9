"""What makes an export's outcome honest or not, as the sandbox offers it (issue #14): rows the transform rejects,
transforms that take time, overlap and finish in any order unless run_after is given, transforms that have not
finished when a client stops waiting, and answers that are not the JSON a client expects.

Sources: ServiceNow's Import Set API docs (ServiceNow/ServiceNowDocs, markdown/api-reference/rest-apis/
c_ImportSetAPI.md: insertMultiple transforms asynchronously; run_after "Enables running the current import set after
the specified import set is complete"); KB1297438 (a REST transaction cancelled by a transaction quota rule answers
HTTP 200 with the error object at the end of the body, often cut off; a full request queue answers 429);
SERVICENOW-FACTS (a hibernating developer instance answers REST calls with an HTML page and HTTP 200; staging rows
are `pending` before the transform and carry sys_import_state_comment after it).
"""

from __future__ import annotations

import json
import time

import pytest

from servicenow_sandbox import SandboxServer
from servicenow_sandbox.errors import QUOTA_DETAIL, QUOTA_MESSAGE


def staged(wire, table: str, import_set_id: str) -> list[dict]:
    response = wire.get(f"/api/now/table/{table}?sysparm_query=sys_import_set={import_set_id}^ORDERBYsys_import_row")
    assert response.status_code == 200, response.text
    return response.json()["result"]


def import_set(wire, import_set_id: str) -> dict:
    return wire.get(f"/api/now/table/sys_import_set/{import_set_id}").json()["result"]


def runs_of(wire, import_set_id: str) -> list[dict]:
    return wire.get(f"/api/now/table/sys_import_set_run?sysparm_query=set={import_set_id}").json()["result"]


# -- rows the transform rejects -----------------------------------------------------------------------------------


def test_every_nth_row_is_rejected_with_a_comment_and_counted_as_an_error(sandbox, wire, make):
    sandbox.faults.reject_rows(every=15, comment="Unable to resolve target record")

    ids = [wire.send_and_wait(make.CONTRACTS, [make.contract(f"{b}-{i}") for i in range(15)]) for b in range(3)]

    for import_set_id in ids:
        run = wire.run_of(import_set_id)
        assert (run["state"], run["inserts"], run["errors"]) == ("complete_with_errors", "14", "1")
        (rejected,) = [row for row in staged(wire, make.CONTRACTS, import_set_id) if row["sys_import_state"] == "error"]
        assert rejected["sys_import_state_comment"] == "Unable to resolve target record"
        assert rejected["sys_target_sys_id"] == ""
    assert len(sandbox.records("ast_contract")) == 42
    assert sandbox.state.snapshot()["faults"]["reject_rows"]["rows_rejected"] == 3


def test_rows_rejected_by_source_id_land_after_the_fault_is_cleared(sandbox, wire, make):
    sandbox.faults.reject_rows(source_ids=["acme:2", "acme:4"], comment="Target field too short")
    batch = [make.computer(f"acme:{i}") for i in range(6)]

    first = wire.send_and_wait(make.HARDWARE, batch)
    states = {row["u_source_id"]: row["sys_import_state"] for row in staged(wire, make.HARDWARE, first)}
    sandbox.faults.clear()
    again = wire.send_and_wait(make.HARDWARE, [batch[2], batch[4]])

    # Computers written through IRE end "ignored" (see test_sandbox_import_sets); rejected ones "error".
    assert states == {f"acme:{i}": "error" if i in (2, 4) else "ignored" for i in range(6)}
    again_rows = staged(wire, make.HARDWARE, again)
    assert [row["sys_import_state_comment"].split(" ")[3] for row in again_rows] == ["INSERT", "INSERT"]
    assert sorted(r["u_source_id"] for r in sandbox.records("cmdb_ci_computer")) == [f"acme:{i}" for i in range(6)]


def test_rejections_can_be_limited_to_one_staging_table_and_set_over_the_control_endpoint(wire, make):
    answer = wire.control("faults", {"reject_rows": {"every": 1, "staging_table": make.CONTRACTS}})
    hardware = wire.send_and_wait(make.HARDWARE, [make.computer("1")])
    contracts = wire.send_and_wait(make.CONTRACTS, [make.contract("c1")])
    cleared = wire.control("faults", {"reject_rows": None})

    assert answer.status_code == 200 and answer.json()["faults"]["reject_rows"]["every"] == 1
    assert wire.run_of(hardware)["errors"] == "0"
    assert wire.run_of(contracts)["errors"] == "1"
    assert cleared.json()["faults"]["reject_rows"] is None


def test_a_rejection_rule_needs_a_rule(sandbox):
    with pytest.raises(ValueError, match="every=N or source_ids"):
        sandbox.faults.reject_rows(comment="nothing to reject")


# -- slow, concurrent and unfinished transforms ---------------------------------------------------------------------


def test_a_slow_transform_leaves_the_import_set_unfinished_until_its_time_is_up(wire_for, make):
    with SandboxServer(transform_seconds=3) as sandbox:  # ample for the reads below on a busy machine
        wire = wire_for(sandbox)
        import_set_id = wire.insert_multiple(make.HARDWARE, [make.computer("1"), make.computer("2")]).json()[
            "import_set_id"
        ]
        time.sleep(0.1)
        during = (import_set(wire, import_set_id)["state"], staged(wire, make.HARDWARE, import_set_id))
        running = runs_of(wire, import_set_id)
        assert sandbox.wait_idle(10)

        assert during[0] == "loaded"
        assert [row["sys_import_state"] for row in during[1]] == ["pending", "pending"]
        assert [(run["state"], run["inserts"], run["total"]) for run in running] == [("running", "0", "2")]
        assert import_set(wire, import_set_id)["state"] == "processed"
        assert wire.run_of(import_set_id)["state"] == "complete"


def test_import_sets_transform_concurrently_not_one_after_another(wire_for, make):
    with SandboxServer(transform_seconds=2) as sandbox:
        wire = wire_for(sandbox)
        wire.access_token()
        started = time.perf_counter()
        for batch in range(4):
            assert wire.insert_multiple(make.HARDWARE, [make.computer(f"{batch}")]).status_code == 201
        assert sandbox.wait_idle(15)
        took = time.perf_counter() - started

    assert 2 <= took < 6  # four import sets of 2 s each, overlapping; one after another would take 8 s


def test_without_run_after_a_fast_import_set_finishes_before_a_slow_earlier_one(wire_for, make):
    """ServiceNow may transform import sets in any order unless run_after is given: installs sent right after
    their computers, but faster to transform, find no computer (the update set's require-computer script makes such
    a row an error)."""
    with SandboxServer(transform_seconds_by_table={make.HARDWARE: 3}) as sandbox:
        wire = wire_for(sandbox)
        wire.insert_multiple(make.HARDWARE, [make.computer("pc-1")])
        installs = wire.insert_multiple(make.INSTALLS, [make.install("i1", "pc-1")]).json()["import_set_id"]
        assert sandbox.wait_idle(10)

        assert wire.run_of(installs)["errors"] == "1"
        assert sandbox.records("cmdb_sam_sw_install") == []


def test_run_after_makes_an_import_set_wait_for_the_named_one(wire_for, make):
    with SandboxServer(transform_seconds_by_table={make.HARDWARE: 3}) as sandbox:
        wire = wire_for(sandbox)
        hardware = wire.insert_multiple(make.HARDWARE, [make.computer("pc-1")]).json()["import_set_id"]
        path = f"/api/now/import/{make.INSTALLS}/insertMultiple?run_after={hardware}"
        installs = wire.call("POST", path, json={"records": [make.install("i1", "pc-1")]}).json()["import_set_id"]
        time.sleep(0.2)
        waiting = runs_of(wire, installs)
        assert sandbox.wait_idle(10)

        assert waiting == []  # not even started while the hardware import set transforms
        assert wire.run_of(installs)["inserts"] == "1"
        (pc,) = sandbox.records("cmdb_ci_computer")
        assert sandbox.records("cmdb_sam_sw_install")[0]["installed_on"] == pc["sys_id"]


def test_held_transforms_stay_pending_past_a_clients_wait_until_released(sandbox, wire, make):
    sandbox.hold_transforms()
    import_set_id = wire.insert_multiple(make.HARDWARE, [make.computer("1")]).json()["import_set_id"]

    assert sandbox.wait_idle(0.3) is False
    assert [row["sys_import_state"] for row in staged(wire, make.HARDWARE, import_set_id)] == ["pending"]
    assert import_set(wire, import_set_id)["state"] == "loaded"
    assert wire.control("state").json()["transforms_held"] is True

    sandbox.release_transforms()

    assert sandbox.wait_idle(5)
    assert wire.run_of(import_set_id)["state"] == "complete"


def test_holding_and_timing_transforms_over_the_control_endpoint(sandbox, wire, make):
    wire.control("faults", {"hold_transforms": True, "transform_seconds": {"seconds": 0.2, "jitter": 0.5}})
    wire.insert_multiple(make.HARDWARE, [make.computer("1")])
    assert sandbox.wait_idle(0.3) is False

    wire.control("faults", {"hold_transforms": False})

    assert sandbox.wait_idle(5)
    assert sandbox.state.settings.transform_seconds == 0.2 and sandbox.state.settings.transform_jitter == 0.5


def test_reset_forgets_held_import_sets(sandbox, wire, make):
    sandbox.hold_transforms()
    wire.insert_multiple(make.HARDWARE, [make.computer("1")])

    sandbox.reset()

    assert sandbox.wait_idle(1)
    assert wire.get("/api/now/table/sys_import_set").json()["result"] == []


# -- answers that are not what a client expects ---------------------------------------------------------------------


def test_a_quota_cancellation_answers_200_with_the_error_object_after_the_real_body(sandbox, wire, make):
    sandbox.faults.quota_cancel_next(1)

    response = wire.insert_multiple(make.HARDWARE, [make.computer("1")])

    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    ids, end = json.JSONDecoder().raw_decode(response.text)
    assert set(ids) == {"import_set_id", "multi_import_set_id"}
    assert json.loads(response.text[end:]) == {
        "error": {"message": QUOTA_MESSAGE, "detail": QUOTA_DETAIL},
        "status": "failure",
    }
    assert sandbox.wait_idle(5)
    assert len(sandbox.records("cmdb_ci_computer")) == 1  # what the cancelled request wrote stays
    assert wire.insert_multiple(make.HARDWARE, [make.computer("2")]).status_code == 201  # only the next one


def test_a_malformed_quota_cancellation_cuts_the_real_body_off(sandbox, wire):
    wire.access_token()
    sandbox.faults.quota_cancel_next(1, malformed=True)

    response = wire.get("/api/now/table/sys_user")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        response.json()
    assert response.text.startswith('{"result":[')
    assert response.text.endswith(
        f'"error": {{"message": "{QUOTA_MESSAGE}","detail": "{QUOTA_DETAIL}"}},"status": "failure"}}'
    )


def test_a_quota_cancellation_while_queued_answers_500_and_writes_nothing(sandbox, wire, make):
    wire.access_token()
    sandbox.faults.quota_cancel_next(1, status=500)

    response = wire.insert_multiple(make.HARDWARE, [make.computer("1")])

    assert response.status_code == 500
    assert response.json()["error"]["message"] == QUOTA_MESSAGE
    assert sandbox.state.snapshot()["import_sets"] == 0


def test_a_hibernating_instance_answers_html_with_200_on_api_and_token_requests(sandbox, wire, make):
    wire.access_token()
    sandbox.faults.hibernate_next(2)

    api = wire.insert_multiple(make.HARDWARE, [make.computer("1")])
    token = wire.password_grant()

    for response in (api, token):
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert "Your instance is hibernating" in response.text
    assert sandbox.state.snapshot()["import_sets"] == 0
    assert wire.password_grant().status_code == 200


def test_a_login_wall_redirects_to_an_html_login_page(sandbox, wire):
    wire.access_token()
    sandbox.faults.redirect_to_login_next(1, scope="api")

    redirected = wire.get("/api/now/table/sys_user", allow_redirects=False)
    followed = wire.session.get(redirected.headers["Location"])

    assert redirected.status_code == 302
    assert redirected.headers["Location"] == f"{wire.url}/login.do"
    assert followed.status_code == 200 and followed.headers["Content-Type"].startswith("text/html")
    assert wire.get("/api/now/table/sys_user").status_code == 200


def test_a_full_request_queue_answers_429_without_retry_after(sandbox, wire):
    wire.access_token()
    sandbox.faults.too_many_requests_next(1)

    response = wire.get("/api/now/table/sys_user")

    assert response.status_code == 429
    assert "Retry-After" not in response.headers
    assert not any(name.lower().startswith("x-ratelimit") for name in response.headers)
    assert response.json()["status"] == "failure"


def test_odd_answers_over_the_control_endpoint(wire):
    wire.access_token()
    set_up = wire.control(
        "faults",
        {"quota_cancel_next": {"count": 1, "malformed": True}, "hibernate_next": {"count": 1, "scope": "token"}},
    )

    kinds = [answer["kind"] for answer in set_up.json()["faults"]["answers"]]
    api = wire.get("/api/now/table/sys_user")
    token = wire.password_grant()

    assert kinds == ["quota_cancel_malformed", "hibernating"]
    assert api.status_code == 200 and '"error": {' in api.text
    assert "hibernating" in token.text
    assert wire.control("faults").json()["answers"] == []


# -- records another source wrote -----------------------------------------------------------------------------------


def test_records_added_as_another_source_are_readable_like_any_other(sandbox, wire):
    rows = sandbox.add_records(
        "cmdb_ci_computer",
        [{"name": "SCCM-PC-1", "serial_number": "SN-1"}, {"name": "SCCM-PC-2", "serial_number": "SN-2"}],
    )

    listed = wire.get("/api/now/table/cmdb_ci_computer?sysparm_query=ORDERBYname").json()["result"]

    assert [row["name"] for row in listed] == ["SCCM-PC-1", "SCCM-PC-2"]
    assert [row["sys_id"] for row in listed] == [row["sys_id"] for row in rows]
    assert {row["u_source_id"] for row in listed} == {""}
    assert listed[0]["install_status"] == "1"


def test_records_with_unknown_columns_are_refused(sandbox):
    with pytest.raises(ValueError, match="no column"):
        sandbox.add_records("cmdb_ci_computer", [{"name": "x", "serail_number": "typo"}])


def test_records_can_be_added_over_the_control_endpoint(sandbox, wire):
    added = wire.control("records", {"table": "cmdb_ci_computer", "records": [{"name": "From SCCM"}]})
    refused = wire.control("records", {"table": "u_nothing", "records": [{"name": "x"}]})

    assert added.status_code == 200 and added.json()["records"][0]["name"] == "From SCCM"
    assert refused.status_code == 400 and "no target table" in refused.json()["error"]
    assert [row["name"] for row in sandbox.records("cmdb_ci_computer")] == ["From SCCM"]
