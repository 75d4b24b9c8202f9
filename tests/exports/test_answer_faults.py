"""ServiceNow's odd answers end in their recorded outcome: a 2xx that is not a clean answer is a failed attempt,
retried, carrying ServiceNow's words; a hibernating instance and a login page are clear errors; an insertMultiple
answer without an import set id is a failed batch; a 429 without Retry-After backs off."""

from __future__ import annotations

import pytest

from tests.exports.conftest import counts
from tests.exports.wire import INSERT_MULTIPLE, TOKEN, Tap

TYPES = ("hardware_inventory",)
QUOTA_TEXT = "Transaction cancelled: maximum execution time exceeded"


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_EXPORT_MAX_RETRIES"] = "2"  # a fault that stays fails after three attempts: fast tests
    return app_env


@pytest.fixture
def tap(sandbox) -> Tap:
    return Tap.on(sandbox)


@pytest.mark.parametrize("malformed", [False, True], ids=["error-appended", "cut-off"])
def test_a_quota_cancelled_200_is_retried_and_every_record_arrives_once(
    sandbox, tap, configure_tenant, inventory, run_export, malformed
):
    """A transaction quota rule cancels a request that already ran and answers HTTP 200 with an error object
    appended to the body, often cut off mid-way (ServiceNow KB1297438). That batch is not done: it is sent again
    (records coalesce on u_source_id, so nothing is duplicated)."""
    inventory(computers=60, installs=0, contracts=0)
    configure_tenant(types=TYPES)
    tap.aim(INSERT_MULTIPLE, arm=lambda: sandbox.faults.quota_cancel_next(1, malformed=malformed))

    run = run_export()

    assert run.status == "succeeded", run.message
    assert counts(run)["hardware_inventory"] == (60, 0)
    assert len(tap.paths(INSERT_MULTIPLE)) == 2
    assert sandbox.wait_idle(20)
    computers = sandbox.records("cmdb_ci_computer")
    assert len(computers) == 60 and len({c["u_source_id"] for c in computers}) == 60


def test_a_quota_cancellation_that_keeps_happening_is_a_failed_batch_with_servicenows_words(
    sandbox, tap, configure_tenant, inventory, run_export
):
    """KB1297438 again: after the retries the batch fails with ServiceNow's own text, not as "a web page"."""
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=TYPES)
    tap.aim(INSERT_MULTIPLE, count=3, arm=lambda: sandbox.faults.quota_cancel_next(1))

    run = run_export()

    assert run.status == "failed"
    (failure,) = run.failed_batches
    assert failure.error_kind == "bad_answer" and failure.record_count == 5
    assert QUOTA_TEXT in failure.message and QUOTA_TEXT in run.message
    assert "web page" not in run.message
    assert len(tap.paths(INSERT_MULTIPLE)) == 3


def test_a_hibernating_instance_fails_the_run_saying_how_to_wake_it(
    client, auth, sandbox, tap, configure_tenant, inventory, run_export
):
    """A hibernating developer instance answers its page "Your instance is hibernating" with HTTP 200
    (SERVICENOW-FACTS; ServiceNow Developer blog "Hibernation and developer instances": wake it from the developer
    portal). Tried again like a 5xx, then the run stops with that, and the connection state says it."""
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=TYPES)
    sandbox.faults.hibernate_next(10, scope="all")

    run = run_export()

    assert run.status == "failed" and run.error_kind == "instance_hibernating", run.message
    assert "is hibernating" in run.message and "Developer Portal" in run.message
    assert "Your instance is hibernating" in run.message  # ServiceNow's page, as text
    assert len(tap.paths(TOKEN)) == 3 and tap.paths(INSERT_MULTIPLE) == []
    auth.login()
    connection = client.get("/settings/general/integrations/servicenow/status").get_json()["connection"]
    assert connection["state"] == "failed" and "hibernating" in connection["message"]


def test_a_hibernation_page_on_one_batch_is_retried(sandbox, tap, configure_tenant, inventory, run_export):
    """As above, but the instance answers normally again: the batch is sent once more and the run succeeds."""
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=TYPES)
    tap.aim(INSERT_MULTIPLE, arm=lambda: sandbox.faults.hibernate_next(1, scope="api"))

    run = run_export()

    assert run.status == "succeeded", run.message
    assert len(tap.paths(INSERT_MULTIPLE)) == 2


def test_an_insert_multiple_answer_without_an_import_set_id_is_a_failed_batch(
    sandbox, tap, configure_tenant, inventory, run_export
):
    """Import Set API docs: insertMultiple answers {"import_set_id", "multi_import_set_id"}. Without the id nothing
    can confirm what ServiceNow did with the batch: it fails (and is sent again), the run does not end in an internal
    error."""
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=TYPES)
    tap.aim(INSERT_MULTIPLE, answer=(200, {"Content-Type": "application/json"}, b'{"result": {"status": "ok"}}'))

    run = run_export()

    assert run.status == "failed" and run.error_kind != "internal", run.message
    (failure,) = run.failed_batches
    assert failure.error_kind == "no_import_set_id" and failure.record_count == 5
    assert "without an import set id" in failure.message
    assert counts(run)["hardware_inventory"] == (0, 5)


def test_a_redirect_to_a_login_page_stops_the_run_clearly(sandbox, tap, configure_tenant, inventory, run_export):
    """A login page in front of the API (single sign-on, an IP access rule) answers 302 to login.do; REST calls
    with a Bearer token never go through it (SERVICENOW-FACTS): nothing is sent and the run says why."""
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=TYPES)
    sandbox.faults.redirect_to_login_next(5, scope="all")

    run = run_export()

    assert run.status == "failed" and run.error_kind == "redirected"
    assert "a login page" in run.message and "/login.do" in run.message
    assert tap.paths(INSERT_MULTIPLE) == [] and "/login.do" not in tap.paths()


def test_a_429_without_retry_after_backs_off_before_trying_again(sandbox, tap, configure_tenant, inventory, run_export):
    """A full request queue answers 429 without Retry-After (ServiceNow KB1297438: semaphore queue full): the batch
    waits, longer each time, instead of hammering the instance, then goes through."""
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=TYPES)
    tap.aim(INSERT_MULTIPLE, count=2, arm=lambda: sandbox.faults.too_many_requests_next(1))

    run = run_export()

    assert run.status == "succeeded", run.message
    first, second, third = tap.times(INSERT_MULTIPLE)
    assert second - first >= 1.0 and third - second >= 2.0
