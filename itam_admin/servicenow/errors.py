"""What went wrong with ServiceNow, classified in one place with a message a tenant admin can act on.

Messages name the host and what to do; they never contain a secret, and ServiceNow's own text is kept raw in `detail`.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from html.parser import HTMLParser
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
    BAD_ANSWER = "bad_answer"
    HIBERNATING = "instance_hibernating"
    NO_IMPORT_SET = "no_import_set_id"
    RESPONSE_TOO_LARGE = "response_too_large"
    INVALID_INSTANCE_URL = "invalid_instance_url"
    INVALID_USERNAME = "invalid_username"
    APP_NOT_INSTALLED = "app_not_installed"


RETRYABLE_KINDS = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.SERVER_ERROR,
        ErrorKind.TIMEOUT,
        ErrorKind.CONNECTION_DROPPED,
        ErrorKind.BAD_ANSWER,
        ErrorKind.HIBERNATING,
    }
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
        ErrorKind.HIBERNATING,  # retried first (it may be waking up), then no batch can get through
        ErrorKind.RESPONSE_TOO_LARGE,
        ErrorKind.INVALID_INSTANCE_URL,
        ErrorKind.INVALID_USERNAME,
        ErrorKind.APP_NOT_INSTALLED,
    }
)

EXAMPLE_URL = "https://your-instance.service-now.com"
# ServiceNow answers a refused refresh grant with the same 401 access_denied whether the token or the OAuth client is
# wrong: either means the stored settings need a new token (or client) before anything can be exported.
NEEDS_NEW_TOKEN_KINDS = frozenset({ErrorKind.TOKEN_REFUSED, ErrorKind.CLIENT_REFUSED})
# The Application Registry entry the connector's update set creates for the default client (servicenow_app.py
# DEFAULT_CLIENT_NAME; kept as text here so this module imports nothing of the package).
DEFAULT_CLIENT_NAME = "ITAM Connector default client"
ANSWER_TEXT_LENGTH = 300  # ServiceNow's words quoted in a message: enough to recognise, short enough to read
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


def grant_refused_message(host: str, custom: bool) -> str:
    """The token endpoint refused the refresh grant. ServiceNow answers 401 access_denied alike for a bad or expired
    token and for an unknown or wrong OAuth client, so the message names the client that was used (never its id or
    secret) and what to check for each."""
    if custom:
        return (
            f"ServiceNow at {host} refused the token or your own OAuth application (the Client ID and Client Secret "
            "under Use custom credentials); it answers both the same way. Generate a new token in ServiceNow and "
            "paste it in Token, then save. If a new token is refused too, check in ServiceNow (System OAuth > "
            "Application Registry) that an active application has this Client ID, then enter the Client ID and "
            "Client Secret again and save."
        )
    return (
        f"ServiceNow at {host} refused the token or this portal's default OAuth application (the Application Registry "
        f"entry {DEFAULT_CLIENT_NAME}); it answers both the same way. Generate a new token in ServiceNow and paste "
        "it in Token, then save. If a new token is refused too, ask your ServiceNow admin to check that the "
        f"Application Registry entry {DEFAULT_CLIENT_NAME} from the connector's update set exists and is active "
        "(System OAuth > Application Registry), or tick Use custom credentials and enter your own OAuth application."
    )


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
            f"ServiceNow at {host} refused the request to {what} as too large (HTTP {status}). If this keeps "
            "happening, ask the portal operator to lower the batch size."
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
        ErrorKind.BAD_ANSWER: (
            f"ServiceNow at {host} answered the request to {what} with HTTP {status}, but the answer was cut off or "
            "carried an error, so it does not count as done (a transaction quota rule cancels requests that run too "
            "long, for example). It was tried again; if it keeps happening, ask your ServiceNow admin to check the "
            "transaction log, or the portal operator to lower the batch size."
        ),
        ErrorKind.HIBERNATING: (
            f"ServiceNow at {host} is hibernating (it answered with its hibernation page). Wake the instance from "
            "the ServiceNow Developer Portal (Manage > Instance), then export again."
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


# ServiceNow's own login pages (login.do, navpage.do, login_with_sso.do), and an SSO or identity provider's paths.
_LOGIN_PATH = re.compile(
    r"(^|/)(login|logon|signin|sign-in|sso|saml2?|adfs|auth|idp)([./_-]|$)|navpage\.do", re.IGNORECASE
)


def redirected(host: str, location: str | None, status: int) -> ServiceNowError:
    """A 3xx. Redirects are never followed; one to a login page (a browser login, SSO, or an IP access rule in front
    of the instance) says so, since a REST call with a Bearer token never goes through a login page."""
    parts = urlsplit(location or "")
    target = (parts.hostname or host).lower()
    if _LOGIN_PATH.search(parts.path or ""):
        page = f"{target}{parts.path[:80]}"  # no query: a SAML request or a return address is not for the page
        message = (
            f"ServiceNow at {host} redirected the request to a web page, a login page ({page}), instead of answering "
            "it, so nothing could be sent. API calls with a token never log in through a web page: check that "
            f"Instance URL is the instance's own address (for example {EXAMPLE_URL}, not a portal or single sign-on "
            "address), and ask your ServiceNow admin whether single sign-on or an IP access rule redirects REST API "
            "calls."
        )
    elif target != host.split(":")[0]:
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


# ---- faults of a run under way --------------------------------------------------------------------------------


def no_import_set_id(host: str, staging_table: str, answer: str | None) -> ServiceNowError:
    """insertMultiple answered 2xx without a usable import set id: nothing says what ServiceNow did with the batch,
    so it is a failed batch (sent again by the next export), never a record counted as exported."""
    message = (
        f"ServiceNow at {host} answered the batch for the staging table {staging_table} without an import set id, "
        "so what it did with these records cannot be checked; they count as failed and the next export sends them "
        "again. If it keeps happening, ask your ServiceNow admin to check the REST Insert Multiple entry of "
        f"{staging_table} (System Web Services > REST Insert Multiples)."
    )
    return ServiceNowError(ErrorKind.NO_IMPORT_SET, message, 200, answer, None, host, stops_run=False)


def waits_beyond(error: ServiceNowError, seconds: float) -> bool:
    """True for a rate limit whose Retry-After (or X-RateLimit-Reset) asks for a longer wait than `seconds`: a
    caller that cannot wait that long pauses instead of failing every request until then."""
    return error.kind is ErrorKind.RATE_LIMITED and error.retry_after is not None and error.retry_after > seconds


def rate_limit_pause(error: ServiceNowError) -> ServiceNowError:
    """The same rate limit as an error that ends the sending loop (the run then waits until the limit ends)."""
    return ServiceNowError(
        error.kind, error.message, error.status, error.detail, error.retry_after, error.host, stops_run=True
    )


def waiting_for_rate_limit_message(until: datetime) -> str:
    return (
        f"Waiting for ServiceNow's rate limit until {until.strftime('%Y-%m-%d %H:%M')} UTC; the export continues "
        "by itself then. Records already sent are kept."
    )


def rate_limit_too_long_message(host: str, until: datetime) -> str:
    return (
        f"ServiceNow at {host} asked to wait until {until.strftime('%Y-%m-%d %H:%M')} UTC before more requests "
        "(rate limit), longer than an export waits, so this export stopped. Records already sent are kept; ask your "
        "ServiceNow admin to raise the REST API rate limit for this user, then export again."
    )


# ---- reading ServiceNow's answers -----------------------------------------------------------------------------


class _PageText(HTMLParser):
    """The visible text of an HTML page (script and style left out)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in ("script", "style", "noscript"):
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def page_text(content: bytes, limit: int = ANSWER_TEXT_LENGTH) -> str:
    """An HTML page's visible text, whitespace collapsed and cut at `limit` characters (plain text: pages escape it)."""
    parser = _PageText()
    try:
        parser.feed(content[:200_000].decode("utf-8", errors="replace"))
        parser.close()
    except (AssertionError, ValueError):  # a page so broken the parser gives up: keep what it read
        pass
    return _bounded(" ".join(" ".join(parser.parts).split()), limit)


def _bounded(text: str, limit: int = ANSWER_TEXT_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_ERROR_MESSAGE = re.compile(r'"message"\s*:\s*"((?:[^"\\]|\\.){1,500})"')
_ERROR_DETAIL = re.compile(r'"detail"\s*:\s*"((?:[^"\\]|\\.){1,500})"')


def _json_values(text: str) -> list[object] | None:
    """Every JSON value in `text`, one after another (ServiceNow may append an error object to an answer); None
    when some part is not JSON (an answer cut off mid-way)."""
    decoder = json.JSONDecoder()
    values, position = [], 0
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position >= len(text):
            return values
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError:
            return None
        values.append(value)


def _unescaped(text: str) -> str:
    try:
        return json.loads(f'"{text}"')
    except ValueError:
        return text


def _appended_error(text: str) -> str | None:
    """ServiceNow's words from the last error object in an answer, even a cut-off one (message, then detail)."""
    start = text.rfind('"error"')
    if start < 0:
        return None
    tail = text[start:]
    parts = [
        _unescaped(match.group(1)) for pattern in (_ERROR_MESSAGE, _ERROR_DETAIL) if (match := pattern.search(tail))
    ]
    return ": ".join(dict.fromkeys(parts)) or None


def _carries_error(body: object) -> bool:
    return isinstance(body, dict) and bool(body.get("error"))


def successful_answer(
    resp: requests.Response, host: str, *, what: str, secrets: tuple[str, ...] = ()
) -> tuple[object, ServiceNowError | None]:
    """Read a 2xx answer of the REST APIs: (the decoded JSON object or list, None), or (None, the error) when it is
    not a clean answer.

    Transaction quota rules cancel a request that already started and append an error object to the body, which is
    then often cut off: HTTP 200 (ServiceNow KB1297438). That is a failed attempt, retried like a 5xx (records
    coalesce on u_source_id, so sending a batch again is safe), carrying ServiceNow's text. A hibernating developer
    instance answers its hibernation page, "Your instance is hibernating", with HTTP 200 (ServiceNow Developer blog,
    "Hibernation and developer instances"). Any other page is not ServiceNow's API."""
    status = resp.status_code
    if is_html(resp):
        text = redact(page_text(resp.content), secrets)
        kind = ErrorKind.HIBERNATING if "hibernat" in (text or "").lower() else ErrorKind.NOT_SERVICENOW
        return None, make_error(kind, host, what=what, status=status, detail=text or None)
    raw = (resp.content or b"").decode("utf-8", errors="replace")
    values = _json_values(raw)
    if values is not None and len(values) == 1 and not _carries_error(values[0]):
        if isinstance(values[0], dict | list):
            return values[0], None
        return None, make_error(ErrorKind.NOT_SERVICENOW, host, what=what, status=status)
    if not values and values is not None:  # an empty body
        return None, make_error(ErrorKind.NOT_SERVICENOW, host, what=what, status=status)
    # Only ServiceNow's error words are quoted, never the rest of the body (it may hold records).
    said = _appended_error(raw) or "the answer was not complete JSON"
    detail = redact(_bounded(said), secrets)
    message = (
        f"{_message(ErrorKind.BAD_ANSWER, host, what=what, status=status, username=None)} ServiceNow said: {detail}"
    )
    return None, ServiceNowError(ErrorKind.BAD_ANSWER, message, status, detail, None, host)


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
    if _rejected_as_too_large(detail):
        # ServiceNow refuses a body over glide.rest.max_content_length with "Rejected large REST payload" (KB0747638),
        # not necessarily with 413 (400 or 500 have been seen): the exporter splits such a batch.
        kind = ErrorKind.PAYLOAD_TOO_LARGE
    retry_after = retry_after_seconds(resp.headers) if kind in RETRYABLE_KINDS else None
    return make_error(
        kind, host, what=what, status=status, detail=detail, retry_after=retry_after, username=username, custom=custom
    )


def _rejected_as_too_large(detail: str | None) -> bool:
    return bool(detail) and "rejected large rest payload" in detail.lower()


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
        if is_html(resp) and "hibernat" in (text := page_text(resp.content)).lower():
            # The hibernation page answers every path, the token endpoint too (HTTP 200): retried, then it stops.
            return make_error(ErrorKind.HIBERNATING, host, what="the OAuth token endpoint", status=status, detail=text)
        return make_error(ErrorKind.NOT_SERVICENOW, host, what="the OAuth token endpoint", status=status)
    codes = tuple(str(body.get(key, "")).lower() for key in ("error", "error_description"))
    if any(code in _CLIENT_CODES for code in codes):
        kind = ErrorKind.CLIENT_REFUSED
    elif any(code in _TOKEN_CODES for code in codes) or status in (401, 403):
        # access_denied says nothing of which part was refused: the message covers the token and the client.
        detail = redact(error_detail(body), secrets)
        return ServiceNowError(ErrorKind.TOKEN_REFUSED, grant_refused_message(host, custom), status, detail, None, host)
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
