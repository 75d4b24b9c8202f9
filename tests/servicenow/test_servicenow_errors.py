"""Classification of ServiceNow's answers and of connection failures, and the messages a tenant admin reads."""

from __future__ import annotations

import json
import pickle
import socket
from email.utils import formatdate

import pytest
import requests
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict

from itam_admin.servicenow import errors
from itam_admin.servicenow.errors import ErrorKind, ServiceNowError

HOST = "acme.service-now.com"


def answer(status: int, body: object = None, content_type: str = "application/json", **headers) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = (body if isinstance(body, str) else json.dumps(body)).encode() if body is not None else b""
    resp.headers = CaseInsensitiveDict({"Content-Type": content_type, **headers})
    return resp


REST_401 = {
    "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
    "status": "failure",
}
LOGIN_PAGE = (
    "<!DOCTYPE html><html><head><title>ServiceNow</title></head><body><form action='login.do'></form></body></html>"
)


@pytest.mark.parametrize(
    "body, kind",
    [
        ({"error": "server_error", "error_description": "access_denied"}, ErrorKind.TOKEN_REFUSED),
        ({"error": "invalid_grant", "error_description": "refresh token expired"}, ErrorKind.TOKEN_REFUSED),
        ({"error": "invalid_client"}, ErrorKind.CLIENT_REFUSED),
    ],
)
def test_token_endpoint_refusals_stop_the_run_and_keep_servicenow_words(body, kind):
    error = errors.from_token_response(answer(401, body), HOST, custom=False)

    assert error.kind is kind
    assert (error.status, error.stops_run, error.retryable) == (401, True, False)
    assert error.detail == errors.error_detail(body)
    assert HOST in error.message


def test_a_refused_grant_says_the_token_or_the_named_oauth_application_was_refused():
    """ServiceNow answers a refused refresh grant 401 access_denied for a bad or expired token and for an unknown or
    wrong OAuth client alike (SERVICENOW-FACTS, OAuth): the message names the client used and what to check."""
    body = {"error": "server_error", "error_description": "access_denied"}
    default = errors.from_token_response(answer(401, body), HOST, custom=False)
    custom = errors.from_token_response(answer(401, body), HOST, custom=True)

    assert str(default).startswith(
        "ServiceNow at acme.service-now.com refused the token or this portal's default OAuth application (the "
        "Application Registry entry ITAM Connector default client); it answers both the same way. Generate a new "
        "token in ServiceNow and paste it in Token, then save."
    )
    assert str(custom).startswith(
        "ServiceNow at acme.service-now.com refused the token or your own OAuth application (the Client ID and "
        "Client Secret under Use custom credentials); it answers both the same way."
    )
    assert "Application Registry" in str(custom) and "Client ID and Client Secret again" in str(custom)


def test_rest_error_body_is_kept_as_detail():
    error = errors.from_response(answer(401, REST_401), HOST, what="the sys_user table")

    assert error.kind is ErrorKind.TOKEN_REFUSED
    assert error.detail == "User Not Authenticated: Required to provide Auth information"


def test_forbidden_names_the_integration_role_not_admin():
    """A 403 is fixed by the update set's role u_itam_integration (it contains import_transformer, the least role
    that loads through the Import Set API: research notes, practitioner and Harness docs), not by the admin role."""
    body = {
        "error": {"message": "Operation Failed", "detail": "ACL Exception Insert Failed due to security constraints"}
    }
    error = errors.from_response(answer(403, body), HOST, what="the staging table u_x", username="itam.export")

    assert error.kind is ErrorKind.FORBIDDEN and error.stops_run and not error.retryable
    assert "itam.export needs the role u_itam_integration" in error.message and HOST in error.message
    assert "ask your ServiceNow admin to grant it" in error.message
    assert "ACL Exception" in error.detail


@pytest.mark.parametrize(
    "status, kind, retryable, stops_run",
    [
        (400, ErrorKind.BAD_REQUEST, False, False),
        (404, ErrorKind.NOT_FOUND, False, False),
        (413, ErrorKind.PAYLOAD_TOO_LARGE, False, False),
        (429, ErrorKind.RATE_LIMITED, True, False),
        (500, ErrorKind.SERVER_ERROR, True, False),
        (503, ErrorKind.SERVER_ERROR, True, False),
    ],
)
def test_status_codes_are_classified(status, kind, retryable, stops_run):
    error = errors.from_response(answer(status, {"error": {"message": "x"}}), HOST, what="the staging table u_x")

    assert (error.kind, error.status, error.retryable, error.stops_run) == (kind, status, retryable, stops_run)
    assert HOST in error.message


def test_an_html_page_is_not_servicenow():
    error = errors.from_response(answer(200, LOGIN_PAGE, "text/html"), HOST, what="the sys_user table")

    assert error.kind is ErrorKind.NOT_SERVICENOW and error.stops_run
    assert "web page" in error.message


def test_an_html_page_from_the_token_endpoint_stops_the_run():
    error = errors.from_token_response(answer(200, LOGIN_PAGE, "text/html"), HOST, custom=False)

    assert error.kind is ErrorKind.NOT_SERVICENOW and error.stops_run


def test_a_token_endpoint_404_stops_the_run():
    error = errors.from_token_response(answer(404, {"error": {"message": "Not found"}}), HOST, custom=False)

    assert error.kind is ErrorKind.NOT_FOUND and error.stops_run


def test_a_redirect_to_another_host_names_it():
    error = errors.from_response(answer(302, "", Location="https://evil.example/x"), HOST, what="the sys_user table")

    assert error.kind is ErrorKind.REDIRECTED and error.stops_run
    assert "evil.example" in error.message


def test_retry_after_seconds_http_date_and_rate_limit_reset():
    now = 1_750_000_000.0
    assert errors.retry_after_seconds(CaseInsensitiveDict({"Retry-After": "7"}), now) == 7
    date = formatdate(now + 30, usegmt=True)
    assert errors.retry_after_seconds(CaseInsensitiveDict({"Retry-After": date}), now) == pytest.approx(30)
    assert errors.retry_after_seconds(CaseInsensitiveDict({"X-RateLimit-Reset": str(int(now) + 12)}), now) == 12
    assert errors.retry_after_seconds(CaseInsensitiveDict({"X-RateLimit-Reset": str(int(now) - 12)}), now) == 0
    assert errors.retry_after_seconds(CaseInsensitiveDict({}), now) is None


def test_rate_limited_error_carries_retry_after():
    error = errors.from_response(
        answer(429, {"error": {"message": "Too many"}}, **{"Retry-After": "3"}), HOST, what="x"
    )

    assert error.retry_after == 3


def _wrapped(reason: Exception) -> requests.ConnectionError:
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))


@pytest.mark.parametrize(
    "exc, kind",
    [
        (
            _wrapped(urllib3.exceptions.NameResolutionError(HOST, None, socket.gaierror(-2, "no name"))),
            "host_not_found",
        ),
        (_wrapped(urllib3.exceptions.NewConnectionError(None, "Connection refused")), "connection_refused"),
        (requests.exceptions.SSLError("certificate verify failed"), "tls"),
        (requests.exceptions.ConnectTimeout("connect timed out"), "timeout"),
        (requests.exceptions.ReadTimeout("read timed out"), "timeout"),
        (requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.")), "connection_dropped"),
        (requests.exceptions.ChunkedEncodingError("dropped"), "connection_dropped"),
    ],
)
def test_connection_failures_are_classified(exc, kind):
    error = errors.from_exception(exc, HOST)

    assert error.kind == kind
    assert HOST in error.message
    assert error.retryable == (kind in ("timeout", "connection_dropped"))
    assert error.stops_run == (kind in ("host_not_found", "connection_refused", "tls"))


def test_secrets_echoed_by_servicenow_are_redacted_and_never_in_str_or_repr(secrets):
    echo = {"error": "invalid_client", "error_description": "unknown client_id default-client-id-5b1e9f"}
    error = errors.from_token_response(answer(401, echo), HOST, custom=False, secrets=tuple(secrets))

    for text in (str(error), repr(error), error.message, error.detail, str(error.args)):
        assert not any(secret in text for secret in secrets)


def test_errors_survive_pickling_for_job_results():
    error = errors.from_response(answer(503, {}, **{"Retry-After": "2"}), HOST, what="x")

    copy = pickle.loads(pickle.dumps(error))

    assert isinstance(copy, ServiceNowError)
    assert (copy.kind, copy.status, copy.retry_after, str(copy)) == (error.kind, 503, 2, str(error))
