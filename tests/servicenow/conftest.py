"""Fixtures for the ServiceNow package: a fake instance on the wire (`responses`), credentials, and a guard that
fails any test whose captured logs contain a secret."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from types import SimpleNamespace
from urllib.parse import parse_qsl

import pytest
import redis
import responses

from itam_admin.crypto import Crypto, generate_key
from itam_admin.servicenow.client import ServiceNowClient
from itam_admin.servicenow.oauth import Credentials, TokenManager

SN = SimpleNamespace(
    instance_url="https://acme.service-now.com",
    host="acme.service-now.com",
    token_url="https://acme.service-now.com/oauth_token.do",
    username="itam.export",
    refresh_token="refresh-Zm9vYmFyYmF6cXV4LXRva2VuLTAwMDE",
    default_client_id="default-client-id-5b1e9f",
    default_client_secret="default-client-secret-8c2d0a",
    custom_client_id="custom-client-id-77aa31",
    custom_client_secret="custom-client-secret-41f0be",
)

# Every secret a test used or the fake instance issued; no captured log line may contain one.
SECRETS: set[str] = {
    SN.refresh_token,
    SN.default_client_id,
    SN.default_client_secret,
    SN.custom_client_id,
    SN.custom_client_secret,
}


@pytest.fixture
def sn() -> SimpleNamespace:
    return SN


@pytest.fixture
def secrets() -> set[str]:
    return SECRETS


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    yield
    formatter = logging.Formatter("%(name)s %(message)s")
    text = "\n".join(formatter.format(r) for when in ("setup", "call") for r in caplog.get_records(when))
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, "a secret appeared in the logs"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class FakeTokenEndpoint:
    """oauth_token.do of the fake instance: issues fresh access tokens, optionally rotates the refresh token,
    or answers what a test queued."""

    def __init__(self, rsps: responses.RequestsMock, url: str = SN.token_url) -> None:
        self.calls: list[dict[str, str]] = []
        self.queued: list[tuple[int, dict[str, str], str]] = []
        self.rotate = False
        self.delay = 0.0
        self.expires_in = 1800
        self.issued: list[str] = []
        self._lock = threading.Lock()
        rsps.add_callback(responses.POST, url, callback=self._answer)

    def queue(self, status: int, body: object, content_type: str = "application/json") -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.queued.append((status, {"Content-Type": content_type}, text))

    def _answer(self, request):
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        form = dict(parse_qsl(body or ""))
        with self._lock:
            self.calls.append(form)
            number = len(self.calls)
            queued = self.queued.pop(0) if self.queued else None
        if self.delay:
            time.sleep(self.delay)
        if queued:
            return queued
        access = f"access-{number}-{uuid.uuid4().hex}"
        refresh = f"rotated-refresh-{number}-{uuid.uuid4().hex}" if self.rotate else form.get("refresh_token")
        SECRETS.update({access, refresh or ""} - {""})
        with self._lock:
            self.issued.append(access)
        answer = {
            "access_token": access,
            "refresh_token": refresh,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(answer)


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def token_endpoint(rsps: responses.RequestsMock) -> FakeTokenEndpoint:
    return FakeTokenEndpoint(rsps)


@pytest.fixture
def crypto() -> Crypto:
    return Crypto([generate_key()])


@pytest.fixture
def creds() -> Credentials:
    return Credentials(
        instance_url=SN.instance_url,
        username=SN.username,
        refresh_token=SN.refresh_token,
        client_id=SN.default_client_id,
        client_secret=SN.default_client_secret,
        custom=False,
    )


@pytest.fixture
def custom_creds(creds: Credentials) -> Credentials:
    return Credentials(
        creds.instance_url, creds.username, creds.refresh_token, SN.custom_client_id, SN.custom_client_secret, True
    )


@pytest.fixture
def tokens(crypto: Crypto) -> TokenManager:
    return TokenManager(None, crypto, timeout=5, allow_insecure=False)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(creds: Credentials, tokens: TokenManager, sleeps: list[float]):
    clients: list[ServiceNowClient] = []

    def make(**options) -> ServiceNowClient:
        options.setdefault("timeout", 5)
        options.setdefault("allow_insecure", False)
        options.setdefault("sleep", sleeps.append)
        client = ServiceNowClient(
            options.pop("tenant_id", "tenant-1"), options.pop("creds", creds), options.pop("tokens", tokens), **options
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client) -> ServiceNowClient:
    return make_client()


@pytest.fixture
def redis_client():
    """Real Redis (db 13); tests use unique tenant ids and delete only their own keys."""
    client = redis.Redis(host="127.0.0.1", port=6379, db=13, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis server at 127.0.0.1:6379")
    created: list[str] = []
    yield SimpleNamespace(client=client, tenant=lambda: created.append(f"t-{uuid.uuid4().hex}") or created[-1])
    for tenant in created:
        keys = [key for key in client.scan_iter(match="itam:servicenow:*") if tenant.encode() in key]
        if keys:
            client.delete(*keys)
