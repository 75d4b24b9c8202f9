"""The token endpoint on the wire: the refresh_token grant, refusals, rotation, caching and one refresh at a time."""

from __future__ import annotations

import threading

import pytest

from itam_admin.crypto import Crypto, generate_key
from itam_admin.servicenow.errors import ErrorKind, ServiceNowError
from itam_admin.servicenow.oauth import Credentials, TokenManager
from itam_admin.settings.values import oauth_client

LOGIN_PAGE = "<html><head><title>Log in | ServiceNow</title></head><body><form action='login.do'></form></body></html>"


def run_together(count: int, work) -> list:
    """Start `count` threads at once and return what each returned (or raised)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as exc:  # the test inspects it
            results[index] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_refresh_grant_is_form_encoded_with_client_secret_post(tokens, creds, token_endpoint, rsps, sn):
    token = tokens.access_token("tenant-1", creds)

    request = rsps.calls[0].request
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert "Authorization" not in request.headers
    assert token_endpoint.calls == [
        {
            "grant_type": "refresh_token",
            "refresh_token": sn.refresh_token,
            "client_id": sn.default_client_id,
            "client_secret": sn.default_client_secret,
        }
    ]
    assert token.value == token_endpoint.issued[0]
    assert token.scope == "useraccount"


def test_access_token_repr_and_credentials_repr_hide_secrets(tokens, creds, token_endpoint, secrets):
    token = tokens.access_token("tenant-1", creds)

    for text in (repr(token), str(token), repr(creds), str(creds)):
        assert not any(secret in text for secret in secrets)
    assert "acme.service-now.com" in repr(creds)


@pytest.mark.parametrize(
    "custom_id, custom_secret, ticked, expected",
    [
        ("mine", "my-secret", True, ("mine", "my-secret", True)),
        ("mine", "my-secret", False, ("default", "default-secret", False)),
        (None, None, True, ("default", "default-secret", False)),
        ("mine", "", True, ("default", "default-secret", False)),
    ],
)
def test_choose_client_prefers_custom_credentials_when_ticked_and_stored(custom_id, custom_secret, ticked, expected):
    assert oauth_client(ticked, custom_id, custom_secret, "default", "default-secret") == expected


@pytest.mark.parametrize("ticked", [True, False])
def test_token_request_carries_the_chosen_client(tokens, token_endpoint, sn, ticked):
    client_id, client_secret, custom = oauth_client(
        ticked, sn.custom_client_id, sn.custom_client_secret, sn.default_client_id, sn.default_client_secret
    )
    creds = Credentials(sn.instance_url, sn.username, sn.refresh_token, client_id, client_secret, custom)

    tokens.access_token("tenant-1", creds)

    sent = token_endpoint.calls[0]
    if ticked:
        assert (sent["client_id"], sent["client_secret"]) == (sn.custom_client_id, sn.custom_client_secret)
    else:
        assert (sent["client_id"], sent["client_secret"]) == (sn.default_client_id, sn.default_client_secret)


@pytest.mark.parametrize(
    "status, body, kind",
    [
        (401, {"error": "server_error", "error_description": "access_denied"}, ErrorKind.TOKEN_REFUSED),
        (401, {"error": "invalid_grant", "error_description": "invalid refresh token"}, ErrorKind.TOKEN_REFUSED),
        (
            401,
            {"error": "invalid_client", "error_description": "client authentication failed"},
            ErrorKind.CLIENT_REFUSED,
        ),
        (200, LOGIN_PAGE, ErrorKind.NOT_SERVICENOW),
        (503, "<html>Service Unavailable</html>", ErrorKind.SERVER_ERROR),
    ],
)
def test_token_endpoint_failures_raise_classified_errors(
    tokens, custom_creds, token_endpoint, status, body, kind, secrets
):
    token_endpoint.queue(status, body, "text/html" if isinstance(body, str) else "application/json")

    with pytest.raises(ServiceNowError) as caught:
        tokens.access_token("tenant-1", custom_creds)

    error = caught.value
    assert error.kind is kind
    assert error.stops_run is (kind is not ErrorKind.SERVER_ERROR)
    assert "acme.service-now.com" in error.message
    if kind is ErrorKind.TOKEN_REFUSED:
        assert "or your own OAuth application" in error.message and "Client ID and Client Secret" in error.message
    assert not any(secret in text for secret in secrets for text in (str(error), repr(error), error.detail or ""))


def test_a_rotated_refresh_token_is_handed_over_once(crypto, creds, token_endpoint):
    rotated: list[tuple[str, str]] = []
    tokens = TokenManager(
        None, crypto, timeout=5, allow_insecure=False, on_refresh_token_rotated=lambda *a: rotated.append(a)
    )
    token_endpoint.rotate = True

    tokens.access_token("tenant-1", creds)
    tokens.access_token("tenant-1", creds)

    assert len(token_endpoint.calls) == 1
    assert len(rotated) == 1
    tenant, new_token = rotated[0]
    assert tenant == "tenant-1" and new_token.startswith("rotated-refresh-1-")


def test_a_refresh_token_that_is_not_rotated_is_kept(crypto, creds, token_endpoint, clock):
    rotated: list[tuple[str, str]] = []
    tokens = TokenManager(
        None,
        crypto,
        timeout=5,
        allow_insecure=False,
        on_refresh_token_rotated=lambda *a: rotated.append(a),
        clock=clock,
    )

    tokens.access_token("tenant-1", creds)
    clock.advance(1800)
    tokens.access_token("tenant-1", creds)

    assert rotated == []
    assert [call["refresh_token"] for call in token_endpoint.calls] == [creds.refresh_token, creds.refresh_token]


def test_after_rotation_a_run_holding_the_old_refresh_token_uses_the_new_one(crypto, creds, token_endpoint, clock):
    tokens = TokenManager(None, crypto, timeout=5, allow_insecure=False, clock=clock)
    token_endpoint.rotate = True

    tokens.access_token("tenant-1", creds)
    clock.advance(1800)
    tokens.access_token("tenant-1", creds)

    first, second = token_endpoint.calls
    assert first["refresh_token"] == creds.refresh_token
    assert second["refresh_token"].startswith("rotated-refresh-1-")


def test_tokens_are_cached_until_shortly_before_expiry(crypto, creds, token_endpoint, clock):
    tokens = TokenManager(None, crypto, timeout=5, allow_insecure=False, clock=clock, margin_seconds=120)

    first = tokens.access_token("tenant-1", creds)
    clock.advance(1800 - 121)
    assert tokens.access_token("tenant-1", creds) == first
    clock.advance(2)
    second = tokens.access_token("tenant-1", creds)

    assert second != first
    assert len(token_endpoint.calls) == 2
    assert second.expires_at.timestamp() == pytest.approx(clock.now + 1800)


def test_changed_settings_never_reuse_a_token_and_forget_drops_it(tokens, creds, token_endpoint, secrets):
    first = tokens.access_token("tenant-1", creds)
    secrets.add("refresh-pasted-again-9f8e7d6c5b4a")
    pasted = Credentials(
        creds.instance_url,
        creds.username,
        "refresh-pasted-again-9f8e7d6c5b4a",
        creds.client_id,
        creds.client_secret,
        False,
    )

    second = tokens.access_token("tenant-1", pasted)
    assert second != first
    assert token_endpoint.calls[1]["refresh_token"] == "refresh-pasted-again-9f8e7d6c5b4a"

    tokens.forget("tenant-1")
    assert tokens.access_token("tenant-1", pasted) != second
    assert len(token_endpoint.calls) == 3


def test_threads_of_one_tenant_with_an_expired_token_cause_one_refresh(crypto, creds, token_endpoint, clock):
    tokens = TokenManager(None, crypto, timeout=5, allow_insecure=False, clock=clock)
    tokens.access_token("tenant-1", creds)
    clock.advance(3600)  # the cached token has expired
    token_endpoint.delay = 0.05

    results = run_together(8, lambda _: tokens.access_token("tenant-1", creds))

    assert len(token_endpoint.calls) == 2
    assert {token.value for token in results} == {token_endpoint.issued[1]}


def test_many_401s_with_the_same_stale_token_cause_one_refresh(tokens, creds, token_endpoint):
    stale = tokens.access_token("tenant-1", creds)
    token_endpoint.delay = 0.05

    results = run_together(
        6, lambda _: tokens.access_token("tenant-1", creds, force_refresh=True, stale_token=stale.value)
    )

    assert len(token_endpoint.calls) == 2
    assert {token.value for token in results} == {token_endpoint.issued[1]}


def test_force_refresh_without_a_stale_token_always_refreshes(tokens, creds, token_endpoint):
    tokens.access_token("tenant-1", creds)
    tokens.access_token("tenant-1", creds, force_refresh=True)

    assert len(token_endpoint.calls) == 2


def test_two_workers_sharing_redis_cause_one_refresh(redis_client, crypto, creds, token_endpoint, clock):
    tenant = redis_client.tenant()
    workers = [TokenManager(redis_client.client, crypto, timeout=5, allow_insecure=False, clock=clock) for _ in "ab"]
    workers[0].access_token(tenant, creds)
    clock.advance(3600)
    token_endpoint.delay = 0.1

    results = run_together(8, lambda i: workers[i % 2].access_token(tenant, creds))

    assert len(token_endpoint.calls) == 2
    assert {token.value for token in results} == {token_endpoint.issued[1]}


def test_a_401_seen_by_two_workers_causes_one_refresh(redis_client, crypto, creds, token_endpoint):
    tenant = redis_client.tenant()
    workers = [TokenManager(redis_client.client, crypto, timeout=5, allow_insecure=False) for _ in "ab"]
    stale = workers[0].access_token(tenant, creds)
    assert workers[1].access_token(tenant, creds) == stale  # shared through Redis
    token_endpoint.delay = 0.1

    results = run_together(
        4, lambda i: workers[i % 2].access_token(tenant, creds, force_refresh=True, stale_token=stale.value)
    )

    assert len(token_endpoint.calls) == 2
    assert {token.value for token in results} == {token_endpoint.issued[1]}


def test_redis_holds_tokens_encrypted_and_keys_without_secrets(redis_client, crypto, creds, token_endpoint, secrets):
    tenant = redis_client.tenant()
    token_endpoint.rotate = True
    tokens = TokenManager(redis_client.client, crypto, timeout=5, allow_insecure=False)
    token = tokens.access_token(tenant, creds)

    keys = [key for key in redis_client.client.scan_iter(match=f"itam:servicenow:*{tenant}*")]
    stored = b"".join(key + (redis_client.client.dump(key) or b"") for key in keys)
    assert keys
    assert not any(secret.encode() in stored for secret in secrets)
    assert token.value.encode() not in stored

    tokens.forget(tenant)
    assert not list(redis_client.client.scan_iter(match=f"itam:servicenow:*{tenant}*"))


def test_a_cached_token_under_a_retired_key_is_refreshed_not_an_error(redis_client, crypto, creds, token_endpoint):
    tenant = redis_client.tenant()
    TokenManager(redis_client.client, crypto, timeout=5, allow_insecure=False).access_token(tenant, creds)
    rekeyed = TokenManager(redis_client.client, Crypto([generate_key()]), timeout=5, allow_insecure=False)

    token = rekeyed.access_token(tenant, creds)

    assert token.value == token_endpoint.issued[1]
