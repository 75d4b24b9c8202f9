"""The only code that talks to ServiceNow's token endpoint: it turns the tenant's refresh token into access tokens,
cached and refreshed once per tenant across threads and workers. Never logs, stores in clear or reports a secret.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from itam_admin.crypto import Crypto
from itam_admin.servicenow import errors
from itam_admin.servicenow.errors import ErrorKind, ServiceNowError
from itam_admin.servicenow.token_cache import AccessToken, MemoryStore, RedisStore, TokenStore, fingerprint
from itam_admin.servicenow.transport import (
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_MAX_RESPONSE_BYTES,
    guard_session,
    time_left,
)
from itam_admin.servicenow.urls import InstanceUrlError, normalise_instance_url

if TYPE_CHECKING:
    import redis

__all__ = ["AccessToken", "Credentials", "TokenManager", "request_access_token", "token_lifetime"]

log = logging.getLogger("itam_admin.servicenow")

TOKEN_PATH = "/oauth_token.do"
DEFAULT_EXPIRES_IN = 1800  # ServiceNow's default access token lifetime, used when the answer has none
# Lifetimes a server may claim are kept within this range: shorter would mean a token request per call, longer
# than a day is nothing ServiceNow issues, and 1e308 or "inf" must not overflow a date.
MIN_EXPIRES_IN = 60
MAX_EXPIRES_IN = 24 * 3600
MAX_ROTATION_HOPS = 5


@dataclass(frozen=True)
class Credentials:
    """All a connection needs; repr and str show the instance and user, never a secret."""

    instance_url: str  # normalised https://host[:port]
    username: str
    refresh_token: str = field(repr=False)
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    custom: bool  # True when the tenant's own OAuth client is used

    @property
    def host(self) -> str:
        return urlsplit(self.instance_url).netloc

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.refresh_token, self.client_id, self.client_secret)


def token_lifetime(value: object) -> int:
    """Seconds an access token lives, from the answer's `expires_in`: numbers (or numeric text) clamped to
    MIN_EXPIRES_IN..MAX_EXPIRES_IN; anything else (missing, NaN, infinite, not a number) gives DEFAULT_EXPIRES_IN."""
    if isinstance(value, bool) or value is None:
        return DEFAULT_EXPIRES_IN
    if isinstance(value, int):
        return max(MIN_EXPIRES_IN, min(MAX_EXPIRES_IN, value))
    try:
        seconds = float(str(value).strip()[:40])
    except (TypeError, ValueError, OverflowError):
        return DEFAULT_EXPIRES_IN
    if not math.isfinite(seconds):
        return DEFAULT_EXPIRES_IN
    return int(max(MIN_EXPIRES_IN, min(MAX_EXPIRES_IN, seconds)))


def _check_token_answer(resp: requests.Response, creds: Credentials, refresh_token: str) -> requests.Response:
    body = errors.json_body(resp) if 200 <= resp.status_code < 300 else None
    if not (isinstance(body, dict) and body.get("access_token")):
        log.info("token endpoint of %s answered HTTP %s", creds.host, resp.status_code)
        raise errors.from_token_response(resp, creds.host, custom=creds.custom, secrets=(*creds.secrets, refresh_token))
    # Authlib turns expires_in (or expires_at) into an int itself: hand it a clamped lifetime and nothing else.
    sane = {key: value for key, value in body.items() if key != "expires_at"}
    sane["expires_in"] = token_lifetime(body.get("expires_in"))
    resp._content = json.dumps(sane).encode()
    return resp


def request_access_token(
    creds: Credentials,
    refresh_token: str,
    *,
    timeout: float,
    allow_insecure: bool,
    now: float,
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> tuple[AccessToken, str | None]:
    """One refresh_token grant; returns the access token and the new refresh token when the server rotated it.

    The request ends within `deadline_seconds` (connect to last byte; sooner inside a transport.deadline_scope),
    reads at most `max_response_bytes`, and goes only to the Instance URL rebuilt by the host-name rule."""
    if not creds.client_id or not creds.client_secret:
        raise ServiceNowError(ErrorKind.CLIENT_REFUSED, errors.no_client_message(), host=creds.host)
    if not refresh_token:
        raise errors.make_error(ErrorKind.TOKEN_REFUSED, creds.host, custom=creds.custom)
    try:
        # The operator's host list was applied when the client was built; here the form of the URL is checked.
        base_url = normalise_instance_url(creds.instance_url, ("*",), allow_insecure)
    except InstanceUrlError as error:
        raise errors.invalid_instance_url(str(error)) from None
    session = OAuth2Session(
        client_id=creds.client_id, client_secret=creds.client_secret, token_endpoint_auth_method="client_secret_post"
    )
    guard_session(
        session,
        allow_insecure=allow_insecure,
        timeout=timeout,
        pool_maxsize=1,
        deadline=deadline_seconds,
        max_response_bytes=max_response_bytes,
    )
    session.register_compliance_hook("refresh_token_response", lambda r: _check_token_answer(r, creds, refresh_token))
    try:
        answer = session.refresh_token(
            base_url + TOKEN_PATH, refresh_token=refresh_token, timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise errors.from_exception(exc, creds.host, what="the OAuth token endpoint") from None
    except (OAuthError, ValueError):  # the body had an "error" beside the token, or was not a token at all
        raise errors.make_error(ErrorKind.NOT_SERVICENOW, creds.host, status=200, stops_run=True) from None
    finally:
        session.close()
    expires_in = token_lifetime(answer.get("expires_in"))
    token = AccessToken(
        value=str(answer["access_token"]),
        expires_at=datetime.fromtimestamp(now + expires_in, UTC),
        scope=str(answer.get("scope") or ""),
    )
    new_refresh = answer.get("refresh_token")
    rotated = str(new_refresh) if new_refresh and new_refresh != refresh_token else None
    log.info(
        "obtained an access token from %s valid for %ds%s", creds.host, expires_in, " (rotated)" if rotated else ""
    )
    return token, rotated


class TokenManager:
    """Access tokens per tenant, cached (encrypted in Redis) until `margin_seconds` before expiry and refreshed by one
    thread of one process at a time; thread-safe."""

    def __init__(
        self,
        redis: redis.Redis | None,
        crypto: Crypto,
        *,
        timeout: float,
        allow_insecure: bool,
        on_refresh_token_rotated: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.time,
        margin_seconds: int = 120,
        request_deadline: float = DEFAULT_DEADLINE_SECONDS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._store: TokenStore = RedisStore(redis, crypto) if redis is not None else MemoryStore(clock)
        self._timeout = timeout
        self._allow_insecure = allow_insecure
        self._on_rotated = on_refresh_token_rotated
        self._clock = clock
        self._margin = margin_seconds
        self._deadline = request_deadline
        self._max_response_bytes = max_response_bytes
        # Held for one token request at most, which ends by its deadline.
        self._lock_timeout = request_deadline + 10
        self._guard = threading.Lock()
        self._tenant_locks: dict[str, threading.Lock] = {}
        self._memory: dict[tuple[str, str], AccessToken] = {}

    def access_token(
        self, tenant_id: str, creds: Credentials, *, force_refresh: bool = False, stale_token: str | None = None
    ) -> AccessToken:
        """A valid access token. After a 401, pass force_refresh and the refused token: only the first caller
        refreshes, the others get the token it obtained."""
        presented = (tenant_id, fingerprint(creds.instance_url, creds.client_id, creds.refresh_token))
        if not force_refresh and (token := self._fresh(self._memory.get(presented))):
            return token
        lock = self._tenant_lock(tenant_id)
        left = time_left()  # inside a caller's deadline_scope, wait no longer than it allows
        if not lock.acquire(timeout=-1 if left is None else left):
            log.warning("waited too long for another thread's token refresh of %s", creds.host)
            raise errors.make_error(ErrorKind.TIMEOUT, creds.host)
        try:
            if not force_refresh and (token := self._fresh(self._memory.get(presented))):
                return token
            with self._store.lock(tenant_id, self._lock_timeout, wait=time_left()) as acquired:
                if not acquired:
                    log.warning("waited too long for the token refresh lock of %s", creds.host)
                    raise errors.make_error(ErrorKind.TIMEOUT, creds.host)
                token = self._shared_or_refreshed(tenant_id, creds, force_refresh, stale_token)
            with self._guard:
                self._prune()
                self._memory[presented] = token
            return token
        finally:
            lock.release()

    def forget(self, tenant_id: str) -> None:
        """Drop the tenant's cached tokens (its settings changed)."""
        with self._guard:
            for key in [key for key in self._memory if key[0] == tenant_id]:
                del self._memory[key]
        self._store.forget(tenant_id)

    def _shared_or_refreshed(
        self, tenant_id: str, creds: Credentials, force_refresh: bool, stale_token: str | None
    ) -> AccessToken:
        refresh_token = self._latest_refresh_token(tenant_id, creds)
        fp = fingerprint(creds.instance_url, creds.client_id, refresh_token)
        cached = self._fresh(self._store.get(tenant_id, fp))
        if cached is not None and (not force_refresh or (stale_token is not None and cached.value != stale_token)):
            return cached
        token, rotated = request_access_token(
            creds,
            refresh_token,
            timeout=self._timeout,
            allow_insecure=self._allow_insecure,
            now=self._clock(),
            deadline_seconds=self._deadline,
            max_response_bytes=self._max_response_bytes,
        )
        if rotated:
            self._store.put_rotated(tenant_id, fp, rotated)
            fp = fingerprint(creds.instance_url, creds.client_id, rotated)
        self._store.put(tenant_id, fp, token, ttl=max(1.0, token.seconds_left(self._clock()) - self._margin))
        if rotated and self._on_rotated is not None:
            self._on_rotated(tenant_id, rotated)
        return token

    def _latest_refresh_token(self, tenant_id: str, creds: Credentials) -> str:
        """Follow rotations another job already made, so a run holding an old refresh token keeps working."""
        token = creds.refresh_token
        for _ in range(MAX_ROTATION_HOPS):
            newer = self._store.rotated(tenant_id, fingerprint(creds.instance_url, creds.client_id, token))
            if newer is None:
                break
            token = newer
        return token

    def _fresh(self, token: AccessToken | None) -> AccessToken | None:
        if token is not None and token.seconds_left(self._clock()) > self._margin:
            return token
        return None

    def _tenant_lock(self, tenant_id: str) -> threading.Lock:
        with self._guard:
            return self._tenant_locks.setdefault(tenant_id, threading.Lock())

    def _prune(self) -> None:
        if len(self._memory) > 1000:
            for key in [key for key, token in self._memory.items() if self._fresh(token) is None]:
                del self._memory[key]
