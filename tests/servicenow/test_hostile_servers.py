"""Hostile ServiceNow stand-ins on loopback (findings 6, 7, 8 and the redirect rule of issue 11): a server that
trickles or never answers cannot hold a call past its deadline, a 400 MB answer is refused while it streams, absurd
token lifetimes are clamped, and redirects are never followed, for the token endpoint and the REST APIs alike."""

from __future__ import annotations

import json
import threading
import time

import psutil
import pytest

from itam_admin.servicenow.client import ServiceNowClient
from itam_admin.servicenow.errors import ErrorKind, ServiceNowError
from itam_admin.servicenow.oauth import MAX_EXPIRES_IN, MIN_EXPIRES_IN, Credentials, TokenManager, request_access_token
from itam_admin.servicenow.token_cache import PREFIX, RedisStore, fingerprint
from tests.servicenow import hostile

TOKEN_PATH = "/oauth_token.do"
USER_PATH = "/api/now/table/sys_user"
REFRESH = "refresh-hostile-test-0001"
CLIENT_ID = "client-id-hostile-01"
CLIENT_SECRET = "client-secret-hostile-01"
MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def hostile_secrets(secrets):
    secrets.update({REFRESH, CLIENT_ID, CLIENT_SECRET, "hostile-access-token-0001", "hostile-refresh-token-0001"})


@pytest.fixture
def server():
    stand_in = hostile.HostileServer()
    yield stand_in
    stand_in.close()


def creds_for(server: hostile.HostileServer) -> Credentials:
    return Credentials(server.url, "itam.export", REFRESH, CLIENT_ID, CLIENT_SECRET, False)


@pytest.fixture
def make_client(server, crypto):
    """A client as connection.client_for builds one from the default settings (30 s per read, 6 retries, 300 s of
    waiting, 120 s per request); tests pass what they change."""
    clients: list[ServiceNowClient] = []

    def make(redis=None, **options) -> ServiceNowClient:
        token_options = {key: options[key] for key in ("request_deadline", "max_response_bytes") if key in options}
        tokens = TokenManager(redis, crypto, timeout=options.get("timeout", 30), allow_insecure=True, **token_options)
        options = {"timeout": 30, "max_retries": 6, "max_wait_seconds": 300, **options}
        client = ServiceNowClient("tenant-h", creds_for(server), tokens, allow_insecure=True, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def a_user() -> hostile.Behaviour:
    return hostile.rows({"user_name": "itam.export", "name": "ITAM Export", "sys_id": "6816f79cc0a80164"})


def timed(call) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the test inspects it
        return error, time.monotonic() - start
    return None, time.monotonic() - start


# ---- finding 6: a total deadline on every call ------------------------------------------------------------------


def test_test_connection_answers_within_30_seconds_against_a_server_trickling_bytes(server, make_client):
    """The finding: one byte a second held a Test connection for 755 s (30 s per read, six retries). With the default
    settings and the ~25 s budget Test connection asks for, the answer comes within 30 s and says what happened."""
    server.routes[TOKEN_PATH] = hostile.trickle_body
    client = make_client(deadline_seconds=25)

    error, elapsed = timed(client.check_connection)

    assert isinstance(error, ServiceNowError) and error.kind is ErrorKind.TIMEOUT
    assert elapsed < 30
    assert f"127.0.0.1:{server.port} did not answer in time" in error.message


@pytest.mark.parametrize("path", [TOKEN_PATH, USER_PATH])
@pytest.mark.parametrize("behaviour", [hostile.trickle_headers, hostile.trickle_body, hostile.silent])
def test_no_server_behaviour_holds_a_call_past_its_budget(server, make_client, path, behaviour):
    server.routes.update({TOKEN_PATH: hostile.token(), USER_PATH: a_user()})
    server.routes[path] = behaviour
    client = make_client(deadline_seconds=3)

    error, elapsed = timed(client.check_connection)

    assert isinstance(error, ServiceNowError) and error.kind is ErrorKind.TIMEOUT
    assert elapsed < 4.5
    assert error.detail == "no complete answer within 3 s"


def test_retries_stop_at_the_calls_deadline(server, make_client):
    """Without a budget from the caller a call still ends: each request by its own deadline, and the retries (with
    their waits) by max_wait_seconds + one request deadline."""
    server.routes.update({TOKEN_PATH: hostile.token(), USER_PATH: hostile.silent})
    client = make_client(request_deadline=1.0, max_wait_seconds=2.0, backoff_base=0.2)

    error, elapsed = timed(client.check_connection)

    assert isinstance(error, ServiceNowError) and error.kind is ErrorKind.TIMEOUT
    assert 1.0 <= elapsed < 4.5
    assert 2 <= server.paths().count(USER_PATH) <= 4  # retried, but not six times 30 s


def test_the_token_request_has_a_total_deadline_of_its_own(server):
    server.routes[TOKEN_PATH] = hostile.trickle_headers

    error, elapsed = timed(
        lambda: request_access_token(
            creds_for(server), REFRESH, timeout=30, allow_insecure=True, now=time.time(), deadline_seconds=2
        )
    )

    assert isinstance(error, ServiceNowError) and error.kind is ErrorKind.TIMEOUT
    assert elapsed < 3.5


def test_a_budget_block_bounds_several_calls_together(server, make_client):
    server.routes.update({TOKEN_PATH: hostile.token(), USER_PATH: a_user()})
    client = make_client()
    assert client.check_connection().user_found  # a prompt server answers within any budget

    server.routes[USER_PATH] = hostile.trickle_body
    start = time.monotonic()
    with client.budget(2), pytest.raises(ServiceNowError) as caught:
        client.check_connection()
    assert caught.value.kind is ErrorKind.TIMEOUT and time.monotonic() - start < 3.5


# ---- finding 7: a cap on the answer's size ----------------------------------------------------------------------


class PeakMemory:
    """The largest resident set size of this process while the block runs, sampled every few milliseconds."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.baseline = self.peak = self._process.memory_info().rss
        self._done = threading.Event()

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@pytest.mark.parametrize("path", [TOKEN_PATH, USER_PATH])
def test_a_400_mb_answer_is_refused_while_it_streams(server, make_client, path):
    """The finding: a 400 MB reply took the portal from 95 MB to 916 MB. The answer (no Content-Length, so it must be
    counted) is refused at the cap, memory grows by little more than the cap, and the call is not retried."""
    server.routes.update({TOKEN_PATH: hostile.token(), USER_PATH: a_user()})
    server.routes[path] = hostile.huge(400 * MIB, content_length=False)
    client = make_client(max_response_bytes=8 * MIB)

    with PeakMemory() as memory:
        error, _ = timed(client.check_connection)

    assert isinstance(error, ServiceNowError) and error.kind is ErrorKind.RESPONSE_TOO_LARGE
    assert error.stops_run and not error.retryable
    assert f"127.0.0.1:{server.port} sent an answer larger than 8.4 MB" in error.message
    assert memory.growth < 8 * MIB + 8 * MIB, f"memory grew by {memory.growth / MIB:.0f} MiB"
    assert server.paths().count(path) == 1


def test_an_answer_announced_as_too_large_is_refused_before_reading_it(server, make_client):
    server.routes.update({TOKEN_PATH: hostile.token(), USER_PATH: hostile.huge(400 * MIB, content_length=True)})
    client = make_client(max_response_bytes=8 * MIB)

    with PeakMemory() as memory:
        error, elapsed = timed(client.check_connection)

    assert isinstance(error, ServiceNowError) and error.kind is ErrorKind.RESPONSE_TOO_LARGE
    assert memory.growth < 4 * MIB and elapsed < 2


# ---- finding 8: token lifetimes clamped ------------------------------------------------------------------------


ABSURD_LIFETIMES = [
    ("1e308", MAX_EXPIRES_IN),  # the finding: OverflowError in fromtimestamp, HTTP 500
    ("1e400", 1800),  # JSON infinity
    ("-1e400", 1800),
    ("NaN", 1800),
    ('"inf"', 1800),
    ('"1e308"', MAX_EXPIRES_IN),
    ("1" + "0" * 400, MAX_EXPIRES_IN),  # an integer too large for a float
    ("-5", MIN_EXPIRES_IN),
    ("0", MIN_EXPIRES_IN),
    ('"abc"', 1800),
    ("null", 1800),
    ("true", 1800),
    ("[]", 1800),
    ('"1799"', 1799),
    ("1799.9", 1799),
]


@pytest.mark.parametrize(("raw", "lifetime"), ABSURD_LIFETIMES)
def test_absurd_token_lifetimes_are_clamped(server, crypto, raw, lifetime):
    server.routes[TOKEN_PATH] = hostile.token(raw=raw)
    tokens = TokenManager(None, crypto, timeout=5, allow_insecure=True)

    before = time.time()
    token = tokens.access_token("tenant-h", creds_for(server))

    assert MIN_EXPIRES_IN <= lifetime <= MAX_EXPIRES_IN
    assert before + lifetime - 1 <= token.expires_at.timestamp() <= time.time() + lifetime + 1


def test_a_clamped_token_lives_in_the_shared_cache_and_check_connection_reports_it(server, make_client, redis_conn):
    server.routes.update({TOKEN_PATH: hostile.token(raw="1e308"), USER_PATH: a_user()})

    check = make_client(redis=redis_conn).check_connection()
    again = make_client(redis=redis_conn).check_connection()  # another worker: the token comes from Redis

    assert check.token_expires_at == again.token_expires_at
    assert check.token_expires_at.timestamp() <= time.time() + MAX_EXPIRES_IN + 1
    assert server.paths().count(TOKEN_PATH) == 1


@pytest.mark.parametrize(
    "entry",
    [
        {"access_token": "x", "expires_at": 1e308},
        {"access_token": "x", "expires_at": "inf"},
        {"access_token": "x", "expires_at": float("nan")},
        {"access_token": "x"},
        "not json at all",
    ],
)
def test_an_unreadable_shared_cache_entry_is_a_miss_not_a_crash(server, crypto, redis_conn, entry):
    server.routes[TOKEN_PATH] = hostile.token()
    creds = creds_for(server)
    key = f"{PREFIX}:access-token:tenant-h:{fingerprint(creds.instance_url, creds.client_id, REFRESH)}"
    text = entry if isinstance(entry, str) else json.dumps(entry)
    redis_conn.set(key, crypto.encrypt(text), px=600_000)

    assert RedisStore(redis_conn, crypto).get("tenant-h", key.rsplit(":", 1)[1]) is None
    token = TokenManager(redis_conn, crypto, timeout=5, allow_insecure=True).access_token("tenant-h", creds)
    assert token.value == "hostile-access-token-0001"
    assert server.paths() == [TOKEN_PATH]


# ---- redirects are never followed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [TOKEN_PATH, USER_PATH])
def test_a_redirect_to_a_login_page_is_reported_not_followed(server, make_client, path):
    server.routes.update({TOKEN_PATH: hostile.token(), USER_PATH: a_user()})
    server.routes[path] = hostile.redirect(f"{server.url}/login.do?sysparm_goto_url=x")
    client = make_client()

    error, _ = timed(client.check_connection)

    assert isinstance(error, ServiceNowError) and error.kind is ErrorKind.REDIRECTED and error.stops_run
    assert "redirected the request to a web page" in error.message
    assert "/login.do" not in server.paths()
    assert server.paths().count(path) == 1


def test_a_redirect_to_another_host_names_it_and_sends_it_nothing(server, make_client, secrets):
    elsewhere = hostile.HostileServer()
    try:
        elsewhere.routes[TOKEN_PATH] = hostile.token()
        server.routes[TOKEN_PATH] = hostile.redirect(f"http://localhost:{elsewhere.port}{TOKEN_PATH}")

        error, _ = timed(make_client().check_connection)

        assert isinstance(error, ServiceNowError) and error.kind is ErrorKind.REDIRECTED
        assert "redirected the request to localhost" in error.message
        assert elsewhere.connections == 0
    finally:
        elsewhere.close()


def test_the_session_itself_refuses_to_follow_a_redirect(server):
    """Even a caller that forgets allow_redirects=False cannot make the guarded session follow one."""
    from itam_admin.servicenow import errors, transport

    server.routes[USER_PATH] = hostile.redirect(f"{server.url}/login.do")
    session = transport.make_session(allow_insecure=True, timeout=5)

    with pytest.raises(Exception) as caught:
        session.get(server.url + USER_PATH)

    assert errors.from_exception(caught.value, f"127.0.0.1:{server.port}").kind is ErrorKind.REDIRECTED
    assert server.paths() == [USER_PATH]
