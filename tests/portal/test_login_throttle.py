"""Login throttling of the demo portal (issue #11, finding 12): five failed logins for one email from one address
within five minutes, then "Too many failed attempts; wait N minutes" until the window ends, counted in Redis so every
portal process shares it, and in the process itself when Redis is down."""

from __future__ import annotations

import time

import pytest

from demo_portal import throttle
from demo_portal.embedded_redis import free_port
from itam_admin.db import db
from tests.conftest import csrf_token_from


@pytest.fixture(autouse=True)
def no_counts_left(redis_url):
    """Counts live in the test session's Redis: none before a test, none left for the next (they would lock out the
    demo users every other test logs in as)."""
    import redis

    def forget() -> None:
        connection = redis.Redis.from_url(redis_url)
        keys = list(connection.scan_iter(throttle.KEY_PREFIX + "*"))
        if keys:
            connection.delete(*keys)
        connection.close()

    forget()
    yield
    forget()


def attempt(client, password: str, email: str = "admin@acme.example", address: str = "198.51.100.7"):
    environ = {"REMOTE_ADDR": address}
    page = client.get("/login", environ_base=environ).get_data(as_text=True)
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf_token_from(page)},
        environ_base=environ,
    )


def test_five_failures_then_even_the_right_password_must_wait(client):
    for _ in range(throttle.MAX_FAILURES):
        assert attempt(client, "wrong").status_code == 401
    response = attempt(client, "demo")
    assert response.status_code == 429
    html = response.get_data(as_text=True)
    assert "Too many failed attempts; wait 5 minutes and try again." in html
    assert 0 < int(response.headers["Retry-After"]) <= throttle.WINDOW_SECONDS
    assert client.get("/").status_code == 302  # not logged in

    # Another user at that address, and this user from another address, are not held up.
    assert attempt(client, "demo", email="viewer@acme.example").status_code == 302
    assert attempt(client, "demo", address="198.51.100.8").status_code == 302


def test_a_successful_login_starts_the_count_again(client):
    for _ in range(throttle.MAX_FAILURES - 1):
        assert attempt(client, "wrong").status_code == 401
    assert attempt(client, "demo").status_code == 302
    for _ in range(throttle.MAX_FAILURES - 1):
        assert attempt(client, "wrong").status_code == 401
    assert attempt(client, "demo").status_code == 302


def test_the_wait_ends_with_the_window(client, monkeypatch):
    # Long enough for the five failures and the attempt after them on a busy machine (the window starts at the first).
    monkeypatch.setattr(throttle, "WINDOW_SECONDS", 3)
    for _ in range(throttle.MAX_FAILURES):
        attempt(client, "wrong")
    response = attempt(client, "demo")
    assert response.status_code == 429 and "wait 1 minute and" in response.get_data(as_text=True)
    time.sleep(3.2)
    assert attempt(client, "demo").status_code == 302


def test_portal_processes_share_the_count(app, app_env, tmp_path):
    from demo_portal import create_app

    second = create_app(env=app_env, instance_path=str(tmp_path / "second"))  # same database and Redis
    for _ in range(3):
        assert attempt(app.test_client(), "wrong").status_code == 401
    for _ in range(2):
        assert attempt(second.test_client(), "wrong").status_code == 401
    assert attempt(app.test_client(), "demo").status_code == 429
    with second.app_context():
        db.engine.dispose()


def test_without_redis_the_process_counts(app_env, tmp_path):
    from demo_portal import create_app
    from demo_portal.demo import seed_demo_portal

    app = create_app(
        env={**app_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, instance_path=str(tmp_path / "p")
    )
    with app.app_context():
        db.create_all()
        seed_demo_portal(hash_method="pbkdf2:sha256:1000")
    try:
        client = app.test_client()
        for _ in range(throttle.MAX_FAILURES):
            assert attempt(client, "wrong").status_code == 401
        response = attempt(client, "demo")
        assert response.status_code == 429 and "wait 5 minutes" in response.get_data(as_text=True)
    finally:
        with app.app_context():
            db.drop_all()
            db.engine.dispose()
