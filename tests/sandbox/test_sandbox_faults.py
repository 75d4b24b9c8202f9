"""Injected faults and rate limits, from Python and over the control endpoint, as a client sees them on the wire."""

from __future__ import annotations

import time

import pytest
import requests


def test_added_latency_delays_api_requests_but_not_the_controls(sandbox, wire):
    wire.access_token()
    sandbox.faults.set_latency(300)

    started = time.perf_counter()
    assert wire.get("/api/now/table/sys_user").status_code == 200
    slow = time.perf_counter() - started
    started = time.perf_counter()
    wire.control("state")
    fast = time.perf_counter() - started

    assert slow >= 0.3
    assert fast < 0.3
    assert sandbox.state.snapshot()["handling_ms_max"] < 300  # the sandbox's own time excludes the injected wait


def test_fail_next_fails_exactly_n_requests_with_a_servicenow_body(sandbox, wire, make):
    wire.access_token()
    sandbox.faults.fail_next(2, status=503)

    answers = [wire.insert_multiple(make.HARDWARE, [make.computer("1")]) for _ in range(3)]

    assert [a.status_code for a in answers] == [503, 503, 201]
    assert answers[0].json() == {
        "error": {"message": "Service Unavailable", "detail": "Injected by the ServiceNow sandbox"},
        "status": "failure",
    }
    assert "Retry-After" not in answers[0].headers  # only when asked for (or on 429)
    assert sandbox.state.snapshot()["records_received"]["u_itam_hardware_inventory"] == 1


def test_failure_message_can_carry_markup_for_escaping_tests(sandbox, wire):
    wire.access_token()
    sandbox.faults.fail_next(1, status=500, markup=True, retry_after=7)

    response = wire.get("/api/now/table/sys_user")

    assert response.status_code == 500
    assert "<b>bold</b>" in response.json()["error"]["message"]
    assert "<script>" in response.json()["error"]["message"]
    assert response.headers["Retry-After"] == "7"


def test_failures_can_target_the_token_endpoint(sandbox, wire):
    sandbox.faults.fail_next(1, status=401, scope="token")

    refused = wire.password_grant()
    accepted = wire.password_grant()

    assert (refused.status_code, refused.json()) == (
        401,
        {"error": "server_error", "error_description": "access_denied"},
    )
    assert accepted.status_code == 200


def test_api_faults_leave_the_token_endpoint_alone(sandbox, wire):
    sandbox.faults.fail_next(1, status=502)

    assert wire.password_grant().status_code == 200
    assert wire.get("/api/now/table/sys_user").status_code == 502


def test_drop_next_closes_the_connection_without_an_answer(sandbox, wire, make):
    wire.access_token()
    sandbox.faults.drop_next(1)

    with pytest.raises(requests.ConnectionError):
        wire.insert_multiple(make.HARDWARE, [make.computer("1")])

    assert wire.insert_multiple(make.HARDWARE, [make.computer("1")]).status_code == 201
    snapshot = sandbox.state.snapshot()
    assert snapshot["dropped"] == 1
    assert snapshot["import_sets"] == 1  # the dropped request was never handled


def test_drop_after_handling_loses_the_answer_but_keeps_the_records(sandbox, wire, make):
    wire.access_token()
    sandbox.faults.drop_next(1, when="after")

    with pytest.raises(requests.ConnectionError):
        wire.insert_multiple(make.HARDWARE, [make.computer("1")])

    assert sandbox.wait_idle()
    assert len(sandbox.records("cmdb_ci_computer")) == 1


def test_rate_limit_counts_per_user_and_answers_429_like_servicenow(sandbox, wire):
    wire.access_token("admin")
    wire.access_token("itil")
    sandbox.faults.set_rate_limit(2, window_seconds=3600)

    first, second, third = (wire.get("/api/now/table/sys_user") for _ in range(3))
    other_user = wire.get("/api/now/table/sys_user", user="itil")

    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert int(first.headers["X-RateLimit-Reset"]) > time.time()
    assert len(first.headers["X-RateLimit-Rule"]) == 32
    assert 0 < int(third.headers["Retry-After"]) <= 3600
    assert third.json() == {
        "error": {
            "message": "Rate limit exceeded",
            "detail": "Rate limit of 2 requests per hour for REST API exceeded",
        },
        "status": "failure",
    }
    assert other_user.status_code == 200


def test_rate_limit_window_resets(sandbox, wire):
    wire.access_token()
    now = [1_800_000_000.0]
    sandbox.faults.clock = lambda: now[0]
    sandbox.faults.set_rate_limit(1, window_seconds=60)

    assert wire.get("/api/now/table/sys_user").status_code == 200
    limited = wire.get("/api/now/table/sys_user")
    now[0] = float(limited.headers["X-RateLimit-Reset"])

    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Reset"] == str(1_800_000_000 + 60)
    assert limited.headers["Retry-After"] == "60"
    assert wire.get("/api/now/table/sys_user").status_code == 200


def test_no_rate_limit_headers_by_default(wire):
    response = wire.get("/api/now/table/sys_user")

    assert not any(name.lower().startswith("x-ratelimit") for name in response.headers)


def test_clear_removes_every_fault(sandbox, wire):
    wire.access_token()
    sandbox.faults.fail_next(5, status=500)
    sandbox.faults.set_rate_limit(1)
    sandbox.faults.set_latency(500)

    sandbox.faults.clear()

    assert [wire.get("/api/now/table/sys_user").status_code for _ in range(3)] == [200, 200, 200]


def test_control_endpoint_sets_faults_and_reports_them(sandbox, wire):
    wire.access_token()

    response = wire.control(
        "faults",
        {
            "latency_ms": 5,
            "fail_next": {"count": 1, "status": 504, "markup": True},
            "drop_next": {"count": 1, "when": "before", "scope": "token"},
            "rate_limit": {"limit": 100, "window_seconds": 60},
        },
    )

    assert response.status_code == 200
    faults = response.json()["faults"]
    assert faults["latency_ms"] == 5
    assert faults["fail_next"]["status"] == 504 and faults["fail_next"]["remaining"] == 1
    assert faults["drop_next"] == {"remaining": 1, "when": "before", "scope": "token"}
    assert faults["rate_limit"] == {"limit": 100, "window_seconds": 60}
    assert wire.get("/api/now/table/sys_user").status_code == 504
    assert wire.control("faults").json()["fail_next"] is None
    assert wire.control("state").json()["faults"]["rate_limit"]["limit"] == 100
    assert wire.control("faults", {"clear": True}).json()["faults"]["rate_limit"] is None


def test_control_endpoint_revokes_and_expires_tokens_and_sets_lifetimes(sandbox, wire):
    admin = wire.access_token("admin")

    revoked = wire.control("faults", {"revoke_tokens": {"user": "admin"}}).json()
    lifetimes = wire.control("faults", {"token_lifetimes": {"access_seconds": 120, "rotate_refresh_tokens": True}})

    assert revoked["revoked"] == 2
    assert lifetimes.status_code == 200
    assert wire.get("/api/now/table/sys_user", headers={"Authorization": f"Bearer {admin}"}).status_code == 401
    body = wire.password_grant().json()
    assert body["expires_in"] == 119
    assert wire.control("faults", {"expire_tokens": {"user": "admin"}}).json()["expired"] == 1
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert wire.get("/api/now/table/sys_user", user=None, headers=bearer).status_code == 401


def test_control_endpoint_refuses_bad_input(wire):
    not_json = wire.session.post(f"{wire.url}/sandbox/api/faults", data={"latency_ms": "5"})
    bad_status = wire.control("faults", {"fail_next": {"count": 1, "status": 200}})
    bad_scope = wire.control("faults", {"drop_next": {"count": 1, "scope": "everything"}})

    assert not_json.status_code == 415
    assert bad_status.status_code == 400 and "status" in bad_status.json()["error"]
    assert bad_scope.status_code == 400


def test_controls_stay_reachable_whatever_the_faults(sandbox, wire):
    sandbox.faults.fail_next(10, status=500, scope="all")
    sandbox.faults.drop_next(10, scope="all")

    assert wire.control("state").status_code == 200
    assert wire.session.get(f"{wire.url}/").status_code == 200


def test_control_endpoint_generates_refresh_tokens_and_adds_clients(wire):
    """Like the update set's token page: any local user gets a token (issue #13); a wrong password none."""
    client = wire.control("clients", {"client_id": "e2e-client", "client_secret": "e2e-secret"}).json()
    token = wire.control("refresh_tokens", {"username": "admin", "password": "admin", "client_id": "e2e-client"})
    not_admin = wire.control("refresh_tokens", {"username": "itil", "password": "itil"})
    wrong = wire.control("refresh_tokens", {"username": "itil", "password": "nope"})

    assert client == {"client_id": "e2e-client", "client_secret": "e2e-secret", "name": "e2e-client"}
    refreshed = wire.token_request(
        grant_type="refresh_token",
        refresh_token=token.json()["refresh_token"],
        client_id="e2e-client",
        client_secret="e2e-secret",
    )
    assert refreshed.status_code == 200
    assert not_admin.status_code == 200 and not_admin.json()["refresh_token"]
    assert wrong.status_code == 401


def test_reset_forgets_records_but_keeps_tokens(sandbox, wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer("1")])

    assert wire.control("reset", {}).json() == {"reset": True}

    assert sandbox.records("cmdb_ci_computer") == []
    assert wire.get("/api/now/table/sys_import_set").json()["result"] == []
