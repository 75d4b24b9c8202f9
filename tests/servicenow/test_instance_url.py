"""The one Instance URL rule: host names checked as host names (finding 1 of issue 11), applied where settings are
saved and again where the worker connects, which then connects to exactly the rebuilt URL."""

from __future__ import annotations

import pytest

from itam_admin.servicenow import transport
from itam_admin.servicenow.errors import ErrorKind, ServiceNowError
from itam_admin.servicenow.urls import InstanceUrlError, normalise_instance_url
from tests.servicenow import hostile

ALLOWED = ("*.service-now.com", "*.servicenowservices.com")
REFRESH = "refresh-instance-url-test-0001"

# Every form of finding 1, and what the admin is told.
BAD_FORMS = [
    ("https://evil.com\\.service-now.com", False, "backslash"),
    ("http://localhost\\.service-now.com", True, "backslash"),
    ("https://evil.com%2f.service-now.com", False, "percent-escapes"),
    ("https://acme.service-now.com%2f@evil.com", False, "percent-escapes"),
    ("https://evil.com%5C.service-now.com", False, "percent-escapes"),
    ("https://evil.com;.service-now.com", False, "only letters, digits, hyphens and dots (found ';')"),
    ("https://a&b.service-now.com", False, "only letters, digits, hyphens and dots (found '&')"),
    ("https://*.service-now.com", False, "only letters, digits, hyphens and dots (found '*')"),
    ("https://<script>.service-now.com", False, "only letters, digits, hyphens and dots (found '<')"),
    ('https://"><script>alert(1)</script>.service-now.com', False, "without a path"),
    ("https://acme .service-now.com", False, "spaces"),
    ("https://acme.service-now.com /", False, "spaces"),
    ("https://acme\t.service-now.com", False, "spaces or control characters"),
    ("https://-x.service-now.com", False, "must not start or end with a hyphen"),
    ("https://x-.service-now.com", False, "must not start or end with a hyphen"),
    ("https://a..service-now.com", False, "two dots in a row"),
    ("https://" + "a" * 64 + ".service-now.com", False, "at most 63 characters"),
    ("https://user@acme.service-now.com", False, "user name"),
    ("https://acme.service-now.com@evil.com", False, "user name"),
    ("https://acme.service-now.com:443:1", False, "not a valid URL"),
    ("https://acme.service-now.com:0", False, "port"),
    ("https://acme.service-now.com:99999", False, "port"),
    ("https://acme.service-now.com:+443", False, "port"),
    ("https://127.1", True, "not an IP address"),
    ("https://2130706433", True, "not an IP address"),
    ("https://10.0.0.5", True, "not an IP address"),
    ("https://169.254.169.254", False, "not an IP address"),
    ("http://127.0.0.1", False, "https://"),
    ("https://localhost", False, "not a ServiceNow instance host"),
    ("https://acme.service-now.com.evil.example", False, "not a ServiceNow instance host"),
    ("https://bad_underscore.service-now.com", False, "found '_'"),
    ("https://ac\u2100me.service-now.com", False, "not a valid URL"),  # NFKC makes it "a/c": urlsplit refuses
    ("https://ac\u2603me.service-now.com", False, "characters that are not allowed"),  # a snowman: not IDNA 2008
]


@pytest.mark.parametrize(("url", "insecure", "message"), BAD_FORMS)
def test_bad_host_forms_are_refused_with_a_clear_message(url, insecure, message):
    with pytest.raises(InstanceUrlError) as caught:
        normalise_instance_url(url, ALLOWED, allow_insecure=insecure)
    assert message in str(caught.value)
    assert "<script>" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "insecure", "rebuilt"),
    [
        ("  HTTPS://Acme.Service-Now.com/  ", False, "https://acme.service-now.com"),
        ("https://acme.service-now.com:443", False, "https://acme.service-now.com"),
        ("https://acme.service-now.com.", False, "https://acme.service-now.com"),
        ("https://acme.service-now.com:8443", False, "https://acme.service-now.com:8443"),
        ("https://äcme.service-now.com", False, "https://xn--cme-pla.service-now.com"),
        ("https://acme-dev2.servicenowservices.com", False, "https://acme-dev2.servicenowservices.com"),
        ("http://127.0.0.1:8765/", True, "http://127.0.0.1:8765"),
        ("http://[::1]:80", True, "http://[::1]"),
        ("http://localhost:5000", True, "http://localhost:5000"),
        ("http://acme.service-now.com:5000", True, "http://acme.service-now.com:5000"),
    ],
)
def test_good_urls_are_rebuilt_from_their_checked_parts(url, insecure, rebuilt):
    assert normalise_instance_url(url, ALLOWED, allow_insecure=insecure) == rebuilt


# ---- again where the worker connects -----------------------------------------------------------------------------


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_SERVICENOW_ALLOW_INSECURE"] = "1"
    app_env["ITAM_SERVICENOW_ALLOWED_HOSTS"] = "*.service-now.com"
    return app_env


@pytest.fixture
def listener():
    server = hostile.HostileServer()
    server.routes["/oauth_token.do"] = hostile.token()
    server.routes["/api/now/table/sys_user"] = hostile.rows({"user_name": "itam.export", "sys_id": "abc"})
    yield server
    server.close()


@pytest.fixture(autouse=True)
def url_secrets(secrets):
    secrets.update({REFRESH, "hostile-access-token-0001", "hostile-refresh-token-0001"})


def store_settings(app, instance_url: str) -> None:
    """Write the tenant's settings straight into the database, as an older release or a hand edit could have."""
    from itam_admin.db import db
    from itam_admin.settings.models import ComplianceTenantSetting
    from itam_admin.settings.values import INSTANCE_URL, TOKEN, USER_NAME

    with app.app_context():
        db.session.add_all(
            [
                ComplianceTenantSetting(tenant_id="acme", name=INSTANCE_URL, value=instance_url),
                ComplianceTenantSetting(tenant_id="acme", name=USER_NAME, value="itam.export"),
                ComplianceTenantSetting(tenant_id="acme", name=TOKEN, secret=REFRESH),
            ]
        )
        db.session.commit()


@pytest.mark.parametrize(
    "stored",
    [
        "http://localhost:{port}\\.service-now.com",  # requests connects to localhost:{port}, path \.service-now.com
        "http://acme.service-now.com@127.0.0.1:{port}",  # user info: requests connects to 127.0.0.1:{port}
        "http://127.0.0.1:{port}#@acme.service-now.com",
        "http://127.0.0.1:{port}/api/now/table/x?",
    ],
)
def test_a_stored_url_that_breaks_the_rule_is_refused_at_connect_time_and_nothing_leaves(app, listener, stored):
    from itam_admin.tenant_client import client_for

    store_settings(app, stored.format(port=listener.port))

    with app.app_context(), pytest.raises(ServiceNowError) as caught:
        client_for("acme").check_connection()

    assert caught.value.kind is ErrorKind.INVALID_INSTANCE_URL and caught.value.stops_run
    assert "Correct the Instance URL" in caught.value.message
    assert listener.connections == 0 and listener.requests == []


def test_a_stored_host_outside_the_operators_list_is_refused_without_a_lookup(app, monkeypatch):
    from itam_admin.tenant_client import client_for

    lookups: list[str] = []
    monkeypatch.setattr(transport, "resolve_host", lambda host, port: lookups.append(host) or ["127.0.0.1"])
    store_settings(app, "https://acme.servicenowservices.com")  # allowed by default, not by this operator

    with app.app_context(), pytest.raises(ServiceNowError) as caught:
        client_for("acme").check_connection()

    assert caught.value.kind is ErrorKind.INVALID_INSTANCE_URL
    assert "acme.servicenowservices.com is not a ServiceNow instance host" in caught.value.message
    assert lookups == []


def test_the_worker_connects_to_exactly_the_rebuilt_url(app, listener):
    from itam_admin.tenant_client import client_for

    store_settings(app, f"HTTP://127.0.0.1:{listener.port}/")  # saved by an older release, not in canonical form

    with app.app_context():
        client = client_for("acme")
        check = client.check_connection()
        client.close()

    assert check.user_found
    assert client.creds.instance_url == f"http://127.0.0.1:{listener.port}"
    assert [request.path.split("?")[0] for request in listener.requests] == [
        "/oauth_token.do",
        "/api/now/table/sys_user",
    ]
    assert all(request.headers["host"] == f"127.0.0.1:{listener.port}" for request in listener.requests)
