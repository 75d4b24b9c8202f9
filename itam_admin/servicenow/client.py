"""The only code that calls ServiceNow's REST APIs (Import Set API, Table API): retries, backoff, one token renewal
on 401, and classified errors, each call bounded by a deadline. Thread-safe; never logs a secret or a record's content.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from itam_admin.servicenow import errors
from itam_admin.servicenow.concurrency import AdaptiveConcurrency
from itam_admin.servicenow.errors import ErrorKind, ServiceNowError
from itam_admin.servicenow.oauth import Credentials, TokenManager
from itam_admin.servicenow.query import encoded_query_value
from itam_admin.servicenow.transport import (
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_MAX_RESPONSE_BYTES,
    current_deadline,
    deadline_scope,
    inherited_deadline,
    make_session,
    time_left,
)
from itam_admin.servicenow.urls import InstanceUrlError, normalise_instance_url

log = logging.getLogger("itam_admin.servicenow")

MAX_BACKOFF_SECONDS = 60.0
RATE_LIMIT_BACKOFF_BASE = 2.0
IMPORT_SET_RUN_FIELDS = ("set", "inserts", "updates", "ignored", "skipped", "errors", "state")
IDS_PER_QUERY = 50  # import set ids in one staging-row query (besides its state and sys_id conditions)
# Import set ids in one sys_import_set_run read: 100 sys_ids, comma-separated and percent-encoded, make a URL of about
# 3,700 characters. A request line over the instance's header limit is answered 414, 431 or 400 without ServiceNow's
# JSON error ("Request header is too large", ServiceNow KB0826932: Tomcat's limit; its size on ServiceNow is not
# documented); such a read is read again in halves, and the client reads that many from then on, never fewer than
# the 50 that every release of the connector read before. Fewer reads make a big export's read-back fewer round
# trips (issue #15).
SETS_PER_RESULTS_READ = 100
FEWEST_SETS_PER_RESULTS_READ = 50
READS_AT_ONCE = 4  # import set result reads in flight at once, unless a pacer holds them to its limit
_TABLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,79}")
_SYS_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_.]{0,79}")  # dot-walked names (user.user_name) included
MAX_READ_ROWS = 1000
STAGING_ROW_FIELDS = (
    "sys_id",
    "sys_import_set",
    "u_source_id",
    "sys_import_state",
    "sys_import_state_comment",
    "sys_target_sys_id",
)
STAGING_PAGE = 1000


@dataclass(frozen=True)
class ConnectionCheck:
    """What the Test connection action found: who the token acts as and until when it is valid."""

    host: str
    username: str  # the Username in the settings
    user_found: bool
    user_name: str  # as ServiceNow knows it
    name: str  # display name
    sys_id: str
    token_expires_at: datetime
    roles: tuple[str, ...] | None = None  # None: the instance did not say

    @property
    def ok(self) -> bool:
        # Whether the user's roles suffice is the app check's question (app_check.py): a least-privileged user with
        # the update set's role u_itam_integration needs no admin role.
        return self.user_found

    @property
    def message(self) -> str:
        if self.user_found:
            who = f"{self.user_name} ({self.name})" if self.name else self.user_name
            return f"Connected to ServiceNow at {self.host} as {who}."
        return (
            f"Connected to ServiceNow at {self.host}, but it has no user named {self.username}. Check Username: "
            "it must be the ServiceNow user the token was generated for."
        )


@dataclass(frozen=True)
class ImportSetIds:
    import_set_id: str
    multi_import_set_id: str


@dataclass(frozen=True)
class ImportSetRunCounts:
    """ServiceNow-side results of transforming one import set (summed over its runs)."""

    inserts: int = 0
    updates: int = 0
    ignored: int = 0
    skipped: int = 0
    errors: int = 0
    state: str = ""


@dataclass(frozen=True)
class StagingRow:
    """One staging row as the transform left it (Import Set docs: `sys_import_state` inserted, updated, ignored,
    skipped, error, or pending before the transform)."""

    sys_id: str
    import_set_id: str
    source_id: str
    state: str
    comment: str
    target_sys_id: str
    values: dict[str, str] = dataclasses.field(default_factory=dict)


def _count(value: object) -> int:
    try:
        return int(float(str(value or 0)))
    except ValueError:
        return 0


def _roles(row: dict | None) -> tuple[str, ...] | None:
    if not row or "roles" not in row:
        return None
    return tuple(role.strip() for role in _text(row["roles"]).split(",") if role.strip())


def _refused_as_too_long(error: ServiceNowError) -> bool:
    """An answer saying the request line was too long: 414 (URI Too Long), 431 (Request Header Fields Too Large), or
    400 without ServiceNow's JSON error (the web server's own page, KB0826932; `detail` holds only ServiceNow's
    JSON error message)."""
    return error.status in (414, 431) or (error.status == 400 and not error.detail)


def _text(value: object) -> str:
    if isinstance(value, dict):  # a reference field answered with link and value
        value = value.get("value", "")
    return "" if value is None else str(value)


class ServiceNowClient:
    """One tenant's connection to its instance; share one client between threads (each gets its own session).

    Time limits: `timeout` bounds each connect and each read; `request_deadline` bounds one HTTP request from connect
    to the answer's last byte; `deadline_seconds` (default: `max_wait_seconds` + `request_deadline`) bounds one
    public call with its token request, every retry and the waits between them. `budget()` sets a shorter limit for
    a block of calls. Answers longer than `max_response_bytes` are refused while they are read.
    """

    def __init__(
        self,
        tenant_id: str,
        creds: Credentials,
        tokens: TokenManager,
        *,
        timeout: float,
        allow_insecure: bool,
        max_retries: int = 6,
        max_wait_seconds: float = 300,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base: float = 0.5,
        request_deadline: float = DEFAULT_DEADLINE_SECONDS,
        deadline_seconds: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        allowed_hosts: tuple[str, ...] | None = None,
    ) -> None:
        try:
            # The host-name rule again, as where the settings were saved: a URL written around the form (or saved
            # under older rules) is refused before anything is sent, and only the rebuilt URL is ever used.
            instance_url = normalise_instance_url(creds.instance_url, allowed_hosts or ("*",), allow_insecure)
        except InstanceUrlError as error:
            log.warning("refused the Instance URL of tenant %s: %s", tenant_id, error)
            raise errors.invalid_instance_url(str(error)) from None
        self.tenant_id = tenant_id
        self.creds = dataclasses.replace(creds, instance_url=instance_url)
        self._tokens = tokens
        self._timeout = timeout
        self._allow_insecure = allow_insecure
        self._max_retries = max_retries
        self._max_wait = max_wait_seconds
        self._sleep = sleep
        self._backoff_base = backoff_base
        self._request_deadline = request_deadline
        self._call_deadline = deadline_seconds if deadline_seconds is not None else max_wait_seconds + request_deadline
        self._max_response_bytes = max_response_bytes
        self._local = threading.local()
        self._guard = threading.Lock()
        self._sets_per_results_read = SETS_PER_RESULTS_READ  # fewer once the instance refused a read as too long
        self._sessions: list[requests.Session] = []
        self._generation = 0
        self._pacer: AdaptiveConcurrency | None = None
        self._read_pool: ThreadPoolExecutor | None = None

    @property
    def host(self) -> str:
        return self.creds.host

    @property
    def pacer(self) -> AdaptiveConcurrency | None:
        """Requests in flight to this instance, adapted to what it takes (an export sets one; None: no limit)."""
        return self._pacer

    @pacer.setter
    def pacer(self, pacer: AdaptiveConcurrency | None) -> None:
        # The reader threads made before (proving the connection) were as many as READS_AT_ONCE; the next read
        # makes as many as the new pacer allows (see _readers).
        with self._guard:
            self._pacer = pacer
            pool, self._read_pool = self._read_pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    # ---- public API ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def budget(self, seconds: float) -> Iterator[None]:
        """Every call this thread makes inside the block (tokens, retries, waits) ends within `seconds`, e.g.
        `with client.budget(25): client.check_connection()`; a call out of time raises a TIMEOUT ServiceNowError."""
        with deadline_scope(seconds):
            yield

    def renew_access_token(self) -> datetime:
        """Ask the token endpoint for a new access token now, whatever is cached, and return when it expires: proves
        that ServiceNow still accepts the refresh token and the OAuth client (each run does, SPEC 5). Retried like
        any call; a refused grant raises TOKEN_REFUSED (or CLIENT_REFUSED)."""
        attempt, waited = 0, 0.0
        with deadline_scope(self._call_deadline):
            while True:
                try:
                    return self._tokens.access_token(self.tenant_id, self.creds, force_refresh=True).expires_at
                except ServiceNowError as error:
                    delay = self._delay(error, attempt, waited)
                    if delay is None:
                        raise
                    attempt, waited = attempt + 1, waited + delay
                    self._sleep(delay)

    def check_connection(self) -> ConnectionCheck:
        """Obtain an access token and make one read call: look up the settings' Username in sys_user."""
        username = self.creds.username
        try:
            value = encoded_query_value(username)
        except ValueError as error:
            raise errors.invalid_username(self.host, str(error)) from None
        params = {
            "sysparm_query": f"user_name={value}",
            "sysparm_limit": "1",
            "sysparm_fields": "user_name,name,sys_id,roles",
        }
        with deadline_scope(self._call_deadline):
            body = self._call("GET", "/api/now/table/sys_user", what="the sys_user table", params=params)
            rows = body.get("result") if isinstance(body, dict) else None
            row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else None
            token = self._tokens.access_token(self.tenant_id, self.creds)
        return ConnectionCheck(
            host=self.host,
            username=username,
            user_found=row is not None,
            user_name=_text((row or {}).get("user_name")),
            name=_text((row or {}).get("name")),
            sys_id=_text((row or {}).get("sys_id")),
            token_expires_at=token.expires_at,
            roles=_roles(row),
        )

    def read_table(
        self,
        table: str,
        query: dict[str, str] | str,
        fields: Sequence[str],
        limit: int = 1,
        *,
        what: str | None = None,
    ) -> list[dict[str, str]]:
        """Read up to `limit` rows of a Table API table, each as {field: text} (references as their sys_id).

        `query` is either {field: value} (joined with `^`, every value checked by encoded_query_value) or an encoded
        query the caller built from checked values. Errors are ServiceNowError as for every call (a 400 "Invalid
        table" for a table the instance lacks, 403 for one the user may not read)."""
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(f"not a ServiceNow table name: {table!r}")
        if not 1 <= limit <= MAX_READ_ROWS:
            raise ValueError(f"limit must be between 1 and {MAX_READ_ROWS}: {limit!r}")
        wanted = list(fields)
        for name in [*wanted, *(query if isinstance(query, dict) else ())]:
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"not a ServiceNow field name: {name!r}")
        if isinstance(query, dict):
            query = "^".join(f"{name}={encoded_query_value(value)}" for name, value in query.items())
        params = {
            "sysparm_limit": str(limit),
            "sysparm_fields": ",".join(wanted),
            "sysparm_exclude_reference_link": "true",
        }
        if query:
            params["sysparm_query"] = query
        body = self._call("GET", f"/api/now/table/{table}", what=what or f"the {table} table", params=params)
        rows = body.get("result") if isinstance(body, dict) else None
        return [
            {name: _text(row.get(name)) for name in wanted}
            for row in (rows if isinstance(rows, list) else [])[:limit]
            if isinstance(row, dict)
        ]

    def insert_multiple(self, staging_table: str, body: bytes, run_after: str | None = None) -> ImportSetIds:
        """Send one batch (already-encoded JSON `{"records": [...]}`) to a staging table of the Import Set API.
        `run_after`: an import set's sys_id that ServiceNow transforms this one after (Import Set API docs: without
        it, asynchronous import sets transform in any order)."""
        if not _TABLE_NAME.fullmatch(staging_table):
            raise ValueError(f"not a ServiceNow table name: {staging_table!r}")
        params = None
        if run_after:
            if not _SYS_ID.fullmatch(run_after):
                raise ValueError(f"not a ServiceNow sys_id: {run_after!r}")
            params = {"run_after": run_after}
        path = f"/api/now/import/{staging_table}/insertMultiple"
        try:
            answer = self._call("POST", path, what=f"the staging table {staging_table}", params=params, data=body)
        except ServiceNowError as error:
            if errors.waits_beyond(error, self._max_wait):
                # Every further batch would be refused until then: the run pauses instead (exporter.export_run).
                raise errors.rate_limit_pause(error) from None
            raise
        if isinstance(answer, dict) and isinstance(answer.get("result"), dict) and "import_set_id" not in answer:
            answer = answer["result"]
        answer = answer if isinstance(answer, dict) else {}
        import_set_id = _text(answer.get("import_set_id"))
        if not _SYS_ID.fullmatch(import_set_id):
            # Without it nothing can confirm what ServiceNow did with the batch: a failed batch, not a crash later.
            shown = ", ".join(sorted(str(key) for key in answer)[:10]) or "nothing"
            raise errors.no_import_set_id(self.host, staging_table, f"the answer held: {shown}")
        multi_id = _text(answer.get("multi_import_set_id"))
        return ImportSetIds(import_set_id, multi_id if _SYS_ID.fullmatch(multi_id) else "")

    def import_set_runs(self, import_set_ids: list[str]) -> dict[str, ImportSetRunCounts]:
        """ServiceNow-side counts per import set id; empty when the user may not read sys_import_set_run."""
        try:
            return self.import_set_results(import_set_ids)
        except ServiceNowError as error:
            if error.kind in (ErrorKind.NOT_FOUND, ErrorKind.FORBIDDEN):
                log.info("cannot read import set runs on %s (HTTP %s)", self.host, error.status)
                return {}
            raise

    def import_set_results(self, import_set_ids: list[str]) -> dict[str, ImportSetRunCounts]:
        """ServiceNow-side counts per import set id (an import set not transformed yet has none); a table the user
        may not read raises ServiceNowError (FORBIDDEN), so a caller can tell "not finished" from "not readable"."""
        ids = _checked_sys_ids(import_set_ids)
        size = self._sets_per_results_read
        chunks = [ids[start : start + size] for start in range(0, len(ids), size)]
        if len(chunks) > 1:
            # A big export's read-back is many reads; a few at once (the pacer, when set, still limits them) instead
            # of one round trip after another. The caller's deadline goes with each read. One failed: the reads
            # still waiting are not sent.
            reads = [self.in_background(self._import_set_runs_of, chunk) for chunk in chunks]
            try:
                pages = [read.result() for read in reads]
            except BaseException:
                for read in reads:
                    read.cancel()
                raise
        else:
            pages = [self._import_set_runs_of(chunks[0])] if chunks else []
        totals: dict[str, ImportSetRunCounts] = {}
        for rows in pages:
            for row in rows:
                if isinstance(row, dict) and (set_id := _text(row.get("set"))):
                    totals[set_id] = _add_run(totals.get(set_id), row)
        return totals

    def _import_set_runs_of(self, chunk: list[str]) -> list:
        """The sys_import_set_run rows of these import sets; in halves when the instance refuses the read as too
        long (see SETS_PER_RESULTS_READ)."""
        try:
            return self._read_import_set_runs(chunk)
        except ServiceNowError as error:
            if len(chunk) <= FEWEST_SETS_PER_RESULTS_READ or not _refused_as_too_long(error):
                raise
        half = (len(chunk) + 1) // 2
        with self._guard:
            self._sets_per_results_read = max(min(self._sets_per_results_read, half), FEWEST_SETS_PER_RESULTS_READ)
        log.info("%s refused a read of %d import sets' results as too long; reading halves", self.host, len(chunk))
        return self._import_set_runs_of(chunk[:half]) + self._import_set_runs_of(chunk[half:])

    def _read_import_set_runs(self, chunk: list[str]) -> list:
        params = {
            "sysparm_query": f"setIN{','.join(chunk)}^ORDERBYsys_created_on",
            "sysparm_fields": ",".join(IMPORT_SET_RUN_FIELDS),
            "sysparm_exclude_reference_link": "true",
            "sysparm_limit": str(len(chunk) * 10),
        }
        what = "the sys_import_set_run table"
        body = self._call("GET", "/api/now/table/sys_import_set_run", what=what, params=params)
        rows = body.get("result") if isinstance(body, dict) else None
        return rows if isinstance(rows, list) else []

    def staging_rows(
        self,
        staging_table: str,
        import_set_ids: list[str],
        states_not_in: Sequence[str] = ("inserted", "updated"),
        *,
        fields: Sequence[str] = (),
        sys_ids: Sequence[str] = (),
    ) -> Iterator[StagingRow]:
        """The staging rows of these import sets whose `sys_import_state` is not one of `states_not_in`, with what
        the transform said of each (and `fields`, e.g. the record's columns), read page by page; `sys_ids` narrows
        them to those rows. Pages go on until one comes back empty: a page that ACLs shortened is not the end."""
        if not _TABLE_NAME.fullmatch(staging_table):
            raise ValueError(f"not a ServiceNow table name: {staging_table!r}")
        extra = [name for name in fields if name not in STAGING_ROW_FIELDS]
        for name in extra:
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"not a ServiceNow field name: {name!r}")
        states = [encoded_query_value(state, in_list=True) for state in states_not_in]
        wanted_rows = _checked_sys_ids(sys_ids)
        ids = _checked_sys_ids(import_set_ids)
        what = f"the staging table {staging_table}"
        for start in range(0, len(ids), IDS_PER_QUERY):
            query = f"sys_import_setIN{','.join(ids[start : start + IDS_PER_QUERY])}"
            if states:
                query += f"^sys_import_stateNOT IN{','.join(states)}"
            if wanted_rows:
                query += f"^sys_idIN{','.join(wanted_rows)}"
            offset = 0
            while True:
                params = {
                    "sysparm_query": query + "^ORDERBYsys_id",
                    "sysparm_fields": ",".join((*STAGING_ROW_FIELDS, *extra)),
                    "sysparm_exclude_reference_link": "true",
                    "sysparm_limit": str(STAGING_PAGE),
                    "sysparm_offset": str(offset),
                }
                body = self._call("GET", f"/api/now/table/{staging_table}", what=what, params=params)
                rows = body.get("result") if isinstance(body, dict) else None
                page = [row for row in (rows if isinstance(rows, list) else [])[:STAGING_PAGE] if isinstance(row, dict)]
                if not page:
                    break
                for row in page:
                    yield StagingRow(
                        sys_id=_text(row.get("sys_id")),
                        import_set_id=_text(row.get("sys_import_set")),
                        source_id=_text(row.get("u_source_id")),
                        state=_text(row.get("sys_import_state")),
                        comment=_text(row.get("sys_import_state_comment")),
                        target_sys_id=_text(row.get("sys_target_sys_id")),
                        values={name: _text(row.get(name)) for name in extra},
                    )
                offset += STAGING_PAGE

    def session(self) -> requests.Session:
        """This thread's keep-alive session (created on first use)."""
        local = self._local
        if getattr(local, "generation", None) != self._generation:
            session = make_session(
                allow_insecure=self._allow_insecure,
                timeout=self._timeout,
                deadline=self._request_deadline,
                max_response_bytes=self._max_response_bytes,
            )
            with self._guard:
                self._sessions.append(session)
            local.session, local.generation = session, self._generation
            local.prepared = {}  # requests prepared on the old session carry its cookies
        return local.session

    def in_background(self, function: Callable[..., Any], *args: Any) -> Future:
        """Run `function(*args)` (calls of this client) on one of its reader threads, within the caller's deadline:
        independent reads at once instead of one round trip after another."""
        scope = current_deadline()

        def run() -> Any:
            with inherited_deadline(scope):
                return function(*args)

        return self._readers().submit(run)

    def _readers(self) -> ThreadPoolExecutor:
        """The client's reader threads (each with its keep-alive session), made on first use: READS_AT_ONCE, or,
        with an export's pacer, as many as its ceiling, so that the pacer's limit decides how many read at once (a
        big export's read-back then takes fewer round trips where the instance has room)."""
        with self._guard:
            if self._read_pool is None:
                readers = max(READS_AT_ONCE, self._pacer.ceiling) if self._pacer is not None else READS_AT_ONCE
                self._read_pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="itam-read")
            return self._read_pool

    def close(self) -> None:
        """Close every thread's session; the client stays usable and opens new ones if called again."""
        with self._guard:
            sessions, self._sessions = self._sessions, []
            self._generation += 1
            pool, self._read_pool = self._read_pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        for session in sessions:
            session.close()

    # ---- one call, with retries --------------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, *, what: str, params: dict[str, str] | None = None, data: bytes | None = None
    ) -> Any:
        with deadline_scope(self._call_deadline):
            return self._attempts(method, path, what=what, params=params, data=data)

    def _attempts(self, method: str, path: str, *, what: str, params: dict[str, str] | None, data: bytes | None) -> Any:
        attempt, waited, renewed = 0, 0.0, False
        stale: str | None = None
        pacer = self.pacer
        while True:
            try:
                token = self._tokens.access_token(
                    self.tenant_id, self.creds, force_refresh=stale is not None, stale_token=stale
                )
                stale = None
                slot = pacer.acquire() if pacer is not None else None
                try:
                    resp = self._send(method, path, token.value, params, data, what)
                    log.debug(
                        "%s %s on %s: HTTP %s (attempt %d)", method, what, self.host, resp.status_code, attempt + 1
                    )
                    if resp.status_code == 401 and not renewed:
                        log.info("%s answered 401 for %s; renewing the access token once", self.host, what)
                        renewed, stale = True, token.value
                        if slot is not None:
                            pacer.give_back(slot)
                            slot = None
                        continue
                    answer = self._decode(resp, what, token.value)
                except ServiceNowError as error:
                    if slot is not None:
                        pacer.release(slot, error=error)
                        slot = None
                    raise
                finally:
                    if slot is not None:
                        pacer.release(slot, body_bytes=len(data) if data else 0)
                return answer
            except ServiceNowError as error:
                delay = self._delay(error, attempt, waited)
                if delay is None:
                    log.warning(
                        "%s on %s failed after %d attempt(s): %s (HTTP %s)",
                        what,
                        self.host,
                        attempt + 1,
                        error.kind.value,
                        error.status,
                    )
                    raise
                attempt, waited = attempt + 1, waited + delay
                log.info("%s on %s: %s, retry %d in %.1fs", what, self.host, error.kind.value, attempt, delay)
                self._sleep(delay)

    def _send(
        self, method: str, path: str, access_token: str, params: dict[str, str] | None, data: bytes | None, what: str
    ) -> requests.Response:
        """One HTTP attempt on this thread's session, straight to its (guarded) adapter: the session's own request
        layer (merging settings, cookies and hooks anew, and a redirect check never used, since redirects are not
        followed) cost about as much CPU per insertMultiple as everything else the client does (issue #15). The
        request is prepared once per thread, URL, parameters and token, and only its body changes; the session's
        cookies go out as requests would send them, and a Set-Cookie in an answer updates them (and the cache)."""
        session = self.session()
        url = self.creds.instance_url + path
        key = (method, url, tuple(sorted(params.items())) if params else (), access_token)
        prepared_requests: dict = self._local.prepared
        base = prepared_requests.get(key)
        if base is None:
            headers = {
                "Authorization": f"Bearer {access_token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
            }
            base = session.prepare_request(requests.Request(method, url, params=params, headers=headers))
            prepared_requests.clear()  # one entry per thread is the common case; a new token or URL replaces it
            prepared_requests[key] = base
        prepared = base.copy()
        prepared.prepare_body(data, None)
        try:
            response = session.get_adapter(url).send(prepared, timeout=self._timeout, verify=session.verify)
        except requests.RequestException as exc:
            raise errors.from_exception(exc, self.host, what=what) from exc
        if "set-cookie" in response.headers:
            session.cookies.update(response.cookies)
            prepared_requests.clear()  # the next request carries the new cookies
        return response

    def _decode(self, resp: requests.Response, what: str, access_token: str) -> Any:
        if 200 <= resp.status_code < 300:
            # A 2xx is not yet a success: ServiceNow may append an error, cut the answer off, or answer a page.
            body, fault = errors.successful_answer(
                resp, self.host, what=what, secrets=(*self.creds.secrets, access_token)
            )
            if fault is not None:
                raise fault
            return body
        raise errors.from_response(
            resp,
            self.host,
            what=what,
            username=self.creds.username,
            custom=self.creds.custom,
            secrets=(*self.creds.secrets, access_token),
        )

    def _delay(self, error: ServiceNowError, attempt: int, waited: float) -> float | None:
        """Seconds to wait before the next attempt, or None when the error is final or the limits are reached."""
        if not error.retryable or attempt >= self._max_retries:
            return None
        base = self._backoff_base
        if error.kind is ErrorKind.RATE_LIMITED:
            # A 429 without a usable hint (no Retry-After, or a reset already past) still backs off, and from a longer
            # base: a full API_INT semaphore queue answers 429 with no Retry-After (ServiceNow KB1297438).
            base = max(base, RATE_LIMIT_BACKOFF_BASE)
        if error.retry_after:
            delay = error.retry_after
        else:
            delay = min(MAX_BACKOFF_SECONDS, base * 2**attempt) * random.uniform(0.5, 1.0)
        if waited + delay > self._max_wait:
            return None
        left = time_left()
        if left is not None and delay >= left:  # the call's deadline would pass before (or just after) the retry
            return None
        return delay


def is_sys_id(value: object) -> bool:
    """Whether `value` can be used as a sys_id in a query (what ServiceNow's ids look like: 32 hex digits)."""
    return isinstance(value, str) and bool(_SYS_ID.fullmatch(value))


def _checked_sys_ids(values: Sequence[str]) -> list[str]:
    """Distinct sys_ids, each checked before it goes into a `fieldIN...` query."""
    ids = list(dict.fromkeys(values))
    for value in ids:
        if not _SYS_ID.fullmatch(value):
            raise ValueError(f"not a ServiceNow sys_id: {value!r}")
        encoded_query_value(value, in_list=True)
    return ids


def _add_run(total: ImportSetRunCounts | None, row: dict[str, Any]) -> ImportSetRunCounts:
    total = total or ImportSetRunCounts()
    return ImportSetRunCounts(
        inserts=total.inserts + _count(row.get("inserts")),
        updates=total.updates + _count(row.get("updates")),
        ignored=total.ignored + _count(row.get("ignored")),
        skipped=total.skipped + _count(row.get("skipped")),
        errors=total.errors + _count(row.get("errors")),
        state=_text(row.get("state")) or total.state,
    )
