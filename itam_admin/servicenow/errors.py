"""What went wrong with ServiceNow, classified in one place with a message a tenant admin can act on.

Messages name the host and what to do; they never contain a secret, and ServiceNow's own text is kept raw in `detail`.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from enum import StrEnum
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

MAX_DETAIL_LENGTH = 1000


class ErrorKind(StrEnum):
    HOST_NOT_FOUND = "host_not_found"
    CONNECTION_REFUSED = "connection_refused"
    TIMEOUT = "timeout"
    CONNECTION_DROPPED = "connection_dropped"
    TLS = "tls"
    TOKEN_REFUSED = "token_refused"
    CLIENT_REFUSED = "client_refused"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    NOT_SERVICENOW = "not_servicenow"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    INTERNAL_ADDRESS = "internal_address"
    REDIRECTED = "redirected"
    RESPONSE_TOO_LARGE = "response_too_large"
    INVALID_INSTANCE_URL = "invalid_instance_url"
    INVALID_USERNAME = "invalid_username"
    APP_NOT_INSTALLED = "app_not_installed"


RETRYABLE_KINDS = frozenset(
    {ErrorKind.RATE_LIMITED, ErrorKind.SERVER_ERROR, ErrorKind.TIMEOUT, ErrorKind.CONNECTION_DROPPED}
)
# Kinds that no later batch can get past: the exporter stops the run instead of trying the next batch.
STOPS_RUN_KINDS = frozenset(
    {
        ErrorKind.HOST_NOT_FOUND,
        ErrorKind.CONNECTION_REFUSED,
        ErrorKind.TLS,
        ErrorKind.TOKEN_REFUSED,
        ErrorKind.CLIENT_REFUSED,
        ErrorKind.FORBIDDEN,
        ErrorKind.NOT_SERVICENOW,
        ErrorKind.INTERNAL_ADDRESS,
        ErrorKind.REDIRECTED,
        ErrorKind.RESPONSE_TOO_LARGE,
        ErrorKind.INVALID_INSTANCE_URL,
        ErrorKind.INVALID_USERNAME,
        ErrorKind.APP_NOT_INSTALLED,
    }
)

EXAMPLE_URL = "https://your-instance.service-now.com"
# The update set's role for a least-privileged integration user (itam_admin/servicenow_app.py ROLE; kept as text here
# so this module imports nothing of the package).
INTEGRATION_ROLE = "u_itam_integration"
SET_UP_STEP = "Set up ServiceNow on the Integrations tab"


class ServiceNowError(Exception):
    """A classified failure talking to ServiceNow; `str()` is the tenant admin's message, never a secret."""

    def __init__(
        self,
        kind: ErrorKind | str,
        message: str,
        status: int | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
        host: str | None = None,
        stops_run: bool | None = None,
    ) -> None:
        kind = ErrorKind(kind)
        super().__init__(kind, message, status, detail, retry_after, host, stops_run)
        self.kind = kind
        self.message = message
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        self.host = host
        self.retryable = kind in RETRYABLE_KINDS
        self.stops_run = kind in STOPS_RUN_KINDS if stops_run is None else stops_run

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ServiceNowError(kind={self.kind.value!r}, status={self.status!r}, message={self.message!r})"


# ---- messages -------------------------------------------------------------------------------------------------


def token_refused_message(host: str, custom: bool) -> str:
    extra = ", or check the Client ID and Client Secret" if custom else ""
    return f"ServiceNow at {host} refused the token. Generate a new token in ServiceNow and paste it in Token{extra}."


def client_refused_message(host: str, custom: bool) -> str:
    if custom:
        return (
            f"ServiceNow at {host} refused the Client ID and Client Secret. Check them in ServiceNow "
            "(System OAuth > Application Registry) and enter them again."
        )
    return (
        f"ServiceNow at {host} does not accept this portal's OAuth client. Tick Use custom credentials and enter the "
        "Client ID and Client Secret of an OAuth application registered in your instance, or ask the portal operator."
    )


def no_client_message() -> str:
    return (
        "No OAuth client is configured for ServiceNow. Tick Use custom credentials and enter the Client ID and "
        "Client Secret of an OAuth application registered in your instance, or ask the portal operator to set one."
    )


def _message(kind: ErrorKind, host: str, *, what: str, status: int | None, username: str | None) -> str:
    who = f"The ServiceNow user {username}" if username else "The ServiceNow user"
    templates = {
        ErrorKind.HOST_NOT_FOUND: (
            f"The host {host} could not be found. Check the Instance URL, for example {EXAMPLE_URL}."
        ),
        ErrorKind.CONNECTION_REFUSED: (
            f"Could not connect to {host}: the connection was refused. Check the Instance URL and its port; "
            "if they are right the instance may be down, so try again later."
        ),
        ErrorKind.TIMEOUT: (
            f"ServiceNow at {host} did not answer in time. The instance may be busy or waking from hibernation; "
            "try again later."
        ),
        ErrorKind.CONNECTION_DROPPED: (
            f"The connection to ServiceNow at {host} was dropped before an answer arrived. Try again later."
        ),
        ErrorKind.TLS: (
            f"The secure connection to {host} failed: its certificate could not be verified. Check the Instance URL; "
            "it must be your instance's own https address."
        ),
        ErrorKind.FORBIDDEN: (
            f"ServiceNow at {host} denied access to {what} (HTTP 403). {who} needs the role {INTEGRATION_ROLE} "
            "(from the connector's update set; admin works too): ask your ServiceNow admin to grant it, then try again."
        ),
        ErrorKind.RATE_LIMITED: (
            f"ServiceNow at {host} is limiting the rate of requests (HTTP 429). Try again later, or ask your "
            "ServiceNow administrator to raise the REST API rate limit for this user."
        ),
        ErrorKind.SERVER_ERROR: (
            f"ServiceNow at {host} answered with a server error (HTTP {status}). Try again later; "
            "if it keeps happening, check the instance's system logs."
        ),
        ErrorKind.NOT_SERVICENOW: (
            f"{host} answered with a web page instead of a ServiceNow API response. Check that the Instance URL is "
            "your ServiceNow instance and that the instance is awake (not hibernating)."
        ),
        ErrorKind.PAYLOAD_TOO_LARGE: (
            f"ServiceNow at {host} refused the request to {what} as too large (HTTP 413). If this keeps happening, "
            "ask the portal operator to lower the batch size."
        ),
        ErrorKind.NOT_FOUND: (
            f"ServiceNow at {host} could not find {what} (HTTP 404). Check that it exists in your instance "
            "and that the user can see it."
        ),
        ErrorKind.BAD_REQUEST: (
            f"ServiceNow at {host} rejected the request to {what} (HTTP {status}). ServiceNow's message says why."
        ),
        ErrorKind.INTERNAL_ADDRESS: (
            f"The Instance URL host {host} points to an internal network address, which is not allowed. "
            f"Enter your ServiceNow instance's public address, for example {EXAMPLE_URL}."
        ),
    }
    return templates[kind]


def make_error(
    kind: ErrorKind,
    host: str,
    *,
    what: str = "the ServiceNow API",
    status: int | None = None,
    detail: str | None = None,
    retry_after: float | None = None,
    username: str | None = None,
    custom: bool = False,
    stops_run: bool | None = None,
) -> ServiceNowError:
    """Build the error of one kind with its standard message."""
    if kind is ErrorKind.TOKEN_REFUSED:
        message = token_refused_message(host, custom)
    elif kind is ErrorKind.CLIENT_REFUSED:
        message = client_refused_message(host, custom)
    else:
        message = _message(kind, host, what=what, status=status, username=username)
    return ServiceNowError(kind, message, status, detail, retry_after, host, stops_run)


def internal_address(host: str) -> ServiceNowError:
    return make_error(ErrorKind.INTERNAL_ADDRESS, host)


def deadline_passed(host: str, seconds: float) -> ServiceNowError:
    """No complete answer within the time allowed for the call (a stalled or trickling server, or a busy instance)."""
    return make_error(ErrorKind.TIMEOUT, host, detail=f"no complete answer within {seconds:.0f} s")


def response_too_large(host: str, limit: int) -> ServiceNowError:
    """The answer was longer than this portal reads; such a server is not answering as ServiceNow does."""
    message = (
        f"{host} sent an answer larger than {limit / 1_000_000:.1f} MB, more than any ServiceNow API answer this "
        "portal asks for, so it was not read. Check that the Instance URL is your ServiceNow instance; if it is, ask "
        "the portal operator to raise the answer size limit."
    )
    return ServiceNowError(ErrorKind.RESPONSE_TOO_LARGE, message, None, f"answer over {limit} bytes", None, host)


def invalid_instance_url(reason: str) -> ServiceNowError:
    """The stored (or given) Instance URL breaks the host-name rule: nothing is sent anywhere."""
    message = (
        f"The Instance URL cannot be used, so nothing was sent: {reason} "
        "Correct the Instance URL in the ServiceNow settings and save them."
    )
    return ServiceNowError(ErrorKind.INVALID_INSTANCE_URL, message)


def invalid_username(host: str, reason: str) -> ServiceNowError:
    """The Username cannot be put into a ServiceNow query safely: nothing is sent."""
    message = f"The Username cannot be used with ServiceNow at {host}: {reason} Correct it in the ServiceNow settings."
    return ServiceNowError(ErrorKind.INVALID_USERNAME, message, host=host)


def redirected(host: str, location: str | None, status: int) -> ServiceNowError:
    target = (urlsplit(location or "").hostname or host).lower()
    if target != host.split(":")[0]:
        message = (
            f"ServiceNow at {host} redirected the request to {target}; redirects are not followed. "
            "If your instance has moved, enter its new address in Instance URL."
        )
    else:
        message = (
            f"ServiceNow at {host} redirected the request to a web page instead of answering it. Check that the "
            "Instance URL is your ServiceNow instance and that the instance is awake (not hibernating)."
        )
    return ServiceNowError(ErrorKind.REDIRECTED, message, status, None, None, host)


# ---- the connector's ServiceNow app (the update set, SPEC 5a) ----------------------------------------------------


def app_staging_table_missing(label: str, table: str) -> str:
    return f"{label}: the staging table {table} does not exist in ServiceNow."


def app_staging_table_unreadable(label: str, table: str, username: str) -> str:
    return (
        f"{label}: ServiceNow does not let {username} read the staging table {table} (HTTP 403), so an export could "
        "not load rows there or read back what ServiceNow did with them."
    )


def app_label_mapped(label: str, table: str, mapping: str | None) -> str:
    how = (
        f"its REST Insert Multiple entry says Column mapping {mapping}"
        if mapping
        else "it has no REST Insert Multiple entry"
    )
    return (
        f"{label}: insertMultiple on {table} maps JSON keys by column label ({how}), so the exported values would "
        "land in no column while ServiceNow still answers that the batch was accepted."
    )


def app_no_transform_map(label: str, table: str, target_table: str) -> str:
    return f"{label}: {table} has no active transform map, so staged rows would never reach {target_table}."


def app_roles_missing(username: str, roles: tuple[str, ...]) -> str:
    return (
        f"The ServiceNow user {username} has none of the roles {', '.join(roles)}, so ServiceNow would refuse to load "
        "the data."
    )


def app_could_not_verify(what: str, table: str, username: str, why: str) -> str:
    return f"Could not verify that {what}: ServiceNow did not let {username} read {table} ({why})."


def app_fix_import(update_set: str) -> str:
    return (
        f"Ask your ServiceNow admin to import the update set {update_set} (the download under {SET_UP_STEP}) and "
        "commit it."
    )


def app_fix_column_name(table: str) -> str:
    return (
        "Ask your ServiceNow admin to open System Web Services > REST Insert Multiples and set Column mapping to "
        f"Column name for {table} (importing the update set again creates the entry)."
    )


def app_fix_transform_map(map_name: str) -> str:
    return (
        f"Ask your ServiceNow admin to open System Import Sets > Transform Maps and make “{map_name}” active "
        "(importing the update set again restores it)."
    )


def app_fix_role(username: str, role: str) -> str:
    return (
        f"Ask your ServiceNow admin to give {username} the role {role} (User Administration > Users > {username} > "
        "Roles), then test again."
    )


def app_fix_check_step(step: int, what: str) -> str:
    return f"Ask your ServiceNow admin to check step {step} of {SET_UP_STEP}: {what}."


def app_not_installed(host: str, labels: list[str], tables: list[str], update_set: str) -> ServiceNowError:
    """The instance lacks the staging tables of the chosen data types: no batch could land, so the run stops at once."""
    plural = len(tables) > 1
    message = (
        f"ServiceNow at {host} does not have the connector's ServiceNow app for {', '.join(labels)}: the staging "
        f"table{'s' if plural else ''} {', '.join(tables)} {'do' if plural else 'does'} not exist. "
        f"{app_fix_import(update_set)} Then export again."
    )
    return ServiceNowError(ErrorKind.APP_NOT_INSTALLED, message, host=host)


# ---- reading ServiceNow's answers -----------------------------------------------------------------------------


def redact(text: str | None, secrets: tuple[str, ...] | list[str]) -> str | None:
    """Remove any secret ServiceNow may have echoed back, and cap the length."""
    if text is None:
        return None
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "********")
    return text[:MAX_DETAIL_LENGTH]


def json_body(resp: requests.Response) -> object | None:
    """The decoded JSON body, or None when the answer is not JSON (an HTML page, say)."""
    content_type = resp.headers.get("Content-Type", "").lower()
    if "html" in content_type:
        return None
    try:
        return json.loads(resp.content or b"null")
    except ValueError:
        return None


def is_html(resp: requests.Response) -> bool:
    if "html" in resp.headers.get("Content-Type", "").lower():
        return True
    return resp.content[:200].lstrip().lower().startswith((b"<!doctype html", b"<html"))


def error_detail(body: object) -> str | None:
    """ServiceNow's own words from a REST error body or an OAuth error body."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        parts = [str(error[key]) for key in ("message", "detail") if error.get(key)]
        return ": ".join(parts) or None
    if isinstance(error, str):
        description = body.get("error_description")
        return f"{error}: {description}" if description else error
    return None


def retry_after_seconds(headers: requests.structures.CaseInsensitiveDict, now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date) or `X-RateLimit-Reset` (epoch seconds)."""
    now = time.time() if now is None else now
    value = (headers.get("Retry-After") or "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, IndexError):
            pass
    reset = (headers.get("X-RateLimit-Reset") or "").strip()
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    return None


def from_response(
    resp: requests.Response,
    host: str,
    *,
    what: str,
    username: str | None = None,
    custom: bool = False,
    secrets: tuple[str, ...] = (),
) -> ServiceNowError:
    """Classify a failed answer of the REST APIs (Table API, Import Set API)."""
    status = resp.status_code
    if 300 <= status < 400:
        return redirected(host, resp.headers.get("Location"), status)
    body = json_body(resp)
    detail = redact(error_detail(body), secrets)
    if status < 300 or (status in (400, 401, 403, 404) and body is None and is_html(resp)):
        return make_error(ErrorKind.NOT_SERVICENOW, host, what=what, status=status)
    kinds = {401: ErrorKind.TOKEN_REFUSED, 403: ErrorKind.FORBIDDEN, 404: ErrorKind.NOT_FOUND}
    kinds.update({413: ErrorKind.PAYLOAD_TOO_LARGE, 429: ErrorKind.RATE_LIMITED})
    kind = kinds.get(status, ErrorKind.SERVER_ERROR if status >= 500 else ErrorKind.BAD_REQUEST)
    retry_after = retry_after_seconds(resp.headers) if kind in RETRYABLE_KINDS else None
    return make_error(
        kind, host, what=what, status=status, detail=detail, retry_after=retry_after, username=username, custom=custom
    )


_CLIENT_CODES = ("invalid_client", "unauthorized_client")
_TOKEN_CODES = ("invalid_grant", "access_denied")


def from_token_response(
    resp: requests.Response, host: str, *, custom: bool, secrets: tuple[str, ...] = ()
) -> ServiceNowError:
    """Classify a failed answer of oauth_token.do; without an access token no batch can go, so most stop the run."""
    status = resp.status_code
    if 300 <= status < 400 or status >= 500 or status == 429:
        return from_response(resp, host, what="the OAuth token endpoint", custom=custom, secrets=secrets)
    body = json_body(resp)
    if status < 300 or not isinstance(body, dict):
        return make_error(ErrorKind.NOT_SERVICENOW, host, what="the OAuth token endpoint", status=status)
    codes = tuple(str(body.get(key, "")).lower() for key in ("error", "error_description"))
    if any(code in _CLIENT_CODES for code in codes):
        kind = ErrorKind.CLIENT_REFUSED
    elif any(code in _TOKEN_CODES for code in codes) or status in (401, 403):
        kind = ErrorKind.TOKEN_REFUSED
    else:
        return _stopping(from_response(resp, host, what="the OAuth token endpoint", custom=custom, secrets=secrets))
    return make_error(kind, host, status=status, detail=redact(error_detail(body), secrets), custom=custom)


def _stopping(error: ServiceNowError) -> ServiceNowError:
    if error.retryable or error.stops_run:
        return error
    return ServiceNowError(error.kind, error.message, error.status, error.detail, None, error.host, True)


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (urllib3 keeps the root in `.reason` and in args) and its chain."""
    seen: list[BaseException] = []
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        stack.extend([getattr(item, "reason", None), item.__cause__, item.__context__, *item.args])
    return seen


def from_exception(exc: Exception, host: str, *, what: str = "the ServiceNow API") -> ServiceNowError:
    """Classify a connection-level failure raised by requests (or by the address check)."""
    if isinstance(exc, ServiceNowError):
        return exc
    causes = _causes(exc)
    if any(isinstance(c, ServiceNowError) for c in causes):
        return next(c for c in causes if isinstance(c, ServiceNowError))
    if isinstance(exc, requests.exceptions.TooManyRedirects) and exc.response is not None:
        return redirected(host, exc.response.headers.get("Location"), exc.response.status_code)
    if isinstance(exc, requests.exceptions.SSLError) or any(isinstance(c, urllib3.exceptions.SSLError) for c in causes):
        kind = ErrorKind.TLS
    elif any(isinstance(c, urllib3.exceptions.NameResolutionError) for c in causes):
        kind = ErrorKind.HOST_NOT_FOUND
    elif isinstance(exc, requests.exceptions.Timeout) or any(
        isinstance(c, urllib3.exceptions.ReadTimeoutError) for c in causes
    ):
        kind = ErrorKind.TIMEOUT
    elif any(isinstance(c, urllib3.exceptions.NewConnectionError) for c in causes):
        kind = ErrorKind.CONNECTION_REFUSED
    elif isinstance(exc, requests.exceptions.RequestException):
        kind = ErrorKind.CONNECTION_DROPPED
    else:
        raise exc
    return make_error(kind, host, what=what)
