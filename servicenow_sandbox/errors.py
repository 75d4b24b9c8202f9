"""Every error answer the sandbox gives, in ServiceNow's own shapes; the only place their wording lives."""

from __future__ import annotations

import json

from flask import Response

JSON_TYPE = "application/json;charset=UTF-8"


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status, headers, content_type=JSON_TYPE)


def api_error(status: int, message: str, detail: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """The REST API's error body: {"error": {"message", "detail"}, "status": "failure"}."""
    return json_response({"error": {"message": message, "detail": detail}, "status": "failure"}, status, headers)


def not_authenticated() -> Response:
    return api_error(401, "User Not Authenticated", "Required to provide Auth information")


def insert_forbidden() -> Response:
    return api_error(403, "Operation Failed", "ACL Exception Insert Failed due to security constraints")


def invalid_table(name: str) -> Response:
    """A table the instance does not have, in the Table API and the Import Set API (recorded answers:
    SERVICENOW-FACTS)."""
    return api_error(400, f"Invalid table {name}", None)


def no_record() -> Response:
    return api_error(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")


def bad_request(message: str, detail: str | None = None) -> Response:
    return api_error(400, message, detail)


def payload_too_large(length: int, limit: int, status: int = 400) -> Response:
    """A body over glide.rest.max_content_length, refused before it is read (KB0747638 gives the body; the status
    is not in the KB: 400 as for the other "Exception while reading request" answers, configurable)."""
    detail = f"Rejected large REST payload with content-length = {length} bytes. Max allowed: {limit} bytes."
    return api_error(status, "Exception while reading request", detail)


def not_parsable() -> Response:
    """A body that is not JSON (ServiceNow KB text for an unparsable REST body)."""
    return api_error(
        400,
        "Exception while reading request",
        "Verify Request body and Content-type headers. Not able to parse request",
    )


# KB1297438 (ServiceNow support): a REST transaction cancelled by a transaction quota rule "will send the following
# at the end of the HTTP response body", HTTP 200 when it ran (even partly), 500 when it was still queued.
QUOTA_MESSAGE = "Transaction cancelled: maximum execution time exceeded"
QUOTA_DETAIL = (
    f"{QUOTA_MESSAGE} Check logs for error trace or enable glide.rest.debug property to verify REST request processing"
)


def quota_cancelled(body: bytes, malformed: bool) -> bytes:
    """What a quota-cancelled answer carries: the real body with ServiceNow's error object after it, or (malformed)
    the real body cut off mid-way and the KB's error fragment after it, as a cancelled transmission shows."""
    if malformed:
        fragment = f'"error": {{"message": "{QUOTA_MESSAGE}","detail": "{QUOTA_DETAIL}"}},"status": "failure"}}'
        return body[: len(body) // 2] + fragment.encode()
    error = {"error": {"message": QUOTA_MESSAGE, "detail": QUOTA_DETAIL}, "status": "failure"}
    return body + json.dumps(error, separators=(",", ":")).encode()


HIBERNATING_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Instance Hibernating page</title></head>
<body><main>
<h1>Your instance is hibernating</h1>
<p>Developer instances hibernate when they are not used. Sign in to the developer site to wake this instance up;
waking takes a few minutes.</p>
</main></body></html>
"""


def hibernating() -> Response:
    """A hibernating developer instance answers every URL, REST ones too, with an HTML page and HTTP 200."""
    return Response(HIBERNATING_PAGE, 200, content_type="text/html;charset=UTF-8")


def login_redirect(base_url: str) -> Response:
    """302 to the instance's login page, as a login wall (SSO, a portal) in front of the API answers."""
    return Response("", 302, {"Location": f"{base_url}/login.do"}, content_type="text/html;charset=UTF-8")


def too_many_requests() -> Response:
    """429 from a full request queue: no Retry-After and no X-RateLimit-* headers (unlike a rate limit rule)."""
    return api_error(429, "Too Many Requests", "The maximum number of requests in the queue was reached")


def rate_limited(limit: int, headers: dict[str, str]) -> Response:
    return api_error(
        429, "Rate limit exceeded", f"Rate limit of {limit} requests per hour for REST API exceeded", headers
    )


DEFAULT_FAULT_MESSAGES = {
    400: "Bad Request",
    401: "User Not Authenticated",
    403: "Operation Failed",
    404: "No Record found",
    408: "Request Timeout",
    429: "Rate limit exceeded",
    500: "Internal server error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def oauth_error(status: int, error: str, description: str) -> Response:
    """The token endpoint's error body (OAuth style, not the REST API's)."""
    return json_response(
        {"error_description": description, "error": error}, status, {"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def grant_refused() -> Response:
    """ServiceNow's answer to any refused grant: wrong password, unknown/expired/revoked refresh token."""
    return oauth_error(401, "server_error", "access_denied")


def client_refused(style: str) -> Response:
    if style == "rfc":
        return oauth_error(401, "invalid_client", "Client authentication failed")
    return grant_refused()
