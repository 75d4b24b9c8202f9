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
    return api_error(404, f"Invalid table {name}", None)


def no_record() -> Response:
    return api_error(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")


def bad_request(message: str, detail: str | None = None) -> Response:
    return api_error(400, message, detail)


def payload_too_large(limit: int) -> Response:
    return api_error(413, "Request entity too large", f"The request body exceeds the limit of {limit} bytes")


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
