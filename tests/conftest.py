"""Fixtures that read like English: an app, a client, a logged-in tenant admin, real Redis and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from demo_portal.embedded_redis import NoRedisServer, free_port, start_redis_server
from itam_admin.db import db

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("ITAM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server of our own on a free port (or ITAM_TEST_REDIS_URL when set)."""
    if os.environ.get("ITAM_TEST_REDIS_URL"):
        yield os.environ["ITAM_TEST_REDIS_URL"]
        return
    port = free_port()
    try:
        process = start_redis_server(port, tmp_path_factory.mktemp("redis"))
    except NoRedisServer as error:
        pytest.fail(str(error))
    url = f"redis://127.0.0.1:{port}/0"
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture
def redis_conn(redis_url):
    import redis

    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    yield connection
    connection.flushdb()


def _postgres_available() -> bool:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(POSTGRES_ADMIN_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_database():
    """A new, empty PostgreSQL database for this test session, dropped afterwards."""

    if not _postgres_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
        pytest.skip("PostgreSQL is not reachable")
    with new_postgres_database("itam_test") as url:
        yield url


@contextlib.contextmanager
def new_postgres_database(prefix: str):
    """A new, empty PostgreSQL database (its SQLAlchemy URL), dropped when the block ends."""
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def encryption_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def app_env(tmp_path, encryption_key, redis_url) -> dict[str, str]:
    """The environment a test app starts with (tests may change it before asking for `app`)."""
    return {
        "ITAM_DEMO": "0",
        "SECRET_KEY": "test-secret-key",
        "ITAM_ENCRYPTION_KEYS": encryption_key,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'itam.sqlite3'}",
        "REDIS_URL": redis_url,
        "ITAM_SERVICENOW_CLIENT_ID": "default-client",
        "ITAM_SERVICENOW_CLIENT_SECRET": "default-client-secret",
        "ITAM_SERVICENOW_ALLOW_INSECURE": "0",
    }


@pytest.fixture
def sandbox(app_env):
    """A ServiceNow sandbox on loopback, the connector's update set installed, whose default OAuth client is the
    portal's (app_env's) default client."""
    from servicenow_sandbox import SandboxServer

    with SandboxServer(
        default_client_id=app_env["ITAM_SERVICENOW_CLIENT_ID"],
        default_client_secret=app_env["ITAM_SERVICENOW_CLIENT_SECRET"],
    ) as server:
        yield server


@pytest.fixture
def app(app_env, tmp_path):
    from demo_portal import create_app
    from demo_portal.demo import seed_demo_portal

    application = create_app(env=app_env, instance_path=str(tmp_path / "instance"))
    application.config["TESTING"] = True
    with application.app_context():
        import demo_portal.models  # noqa: F401
        import itam_admin.models  # noqa: F401  (the whole schema)

        db.create_all()
        seed_demo_portal(hash_method="pbkdf2:sha256:1000")  # fast hashing: tests log in often
    yield application
    with application.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


CSRF_PATTERN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token_from(html: str) -> str:
    match = CSRF_PATTERN.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


class AuthActions:
    """Log in and out as the demo users, the way a browser does (CSRF token from the login page)."""

    def __init__(self, client) -> None:
        self._client = client

    def login(self, email: str = "admin@acme.example", password: str = "demo"):
        page = self._client.get("/login")
        token = csrf_token_from(page.get_data(as_text=True))
        response = self._client.post("/login", data={"email": email, "password": password, "csrf_token": token})
        assert response.status_code == 302, f"login as {email} failed"
        return response

    def logout(self):
        page = self._client.get("/")
        return self._client.post("/logout", data={"csrf_token": csrf_token_from(page.get_data(as_text=True))})


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)


INTEGRATIONS = "/settings/general/integrations"


@pytest.fixture
def integrations_page(client):
    """Fetch the Integrations tab and return (response, csrf token)."""

    def fetch():
        response = client.get(INTEGRATIONS)
        html = response.get_data(as_text=True)
        token = csrf_token_from(html) if response.status_code == 200 else None
        return response, token

    return fetch


def stop_process(process, grace_seconds: float = 15) -> None:
    """Terminate a child process, killing it when it does not stop within the grace period."""
    process.terminate()
    try:
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def password_grant_refresh_token(sandbox_url: str, user: str, password: str | None = None) -> str:
    """A refresh token by the password grant (the sandbox's token page refuses users without the admin role)."""
    import requests

    answer = requests.post(
        f"{sandbox_url}/oauth_token.do",
        data={
            "grant_type": "password",
            "client_id": "default-client",
            "client_secret": "default-client-secret",
            "username": user,
            "password": password or user,
        },
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["refresh_token"]
