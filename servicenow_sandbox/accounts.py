"""Users, OAuth clients and tokens of the sandbox: grants, checks, revocation and expiry.

It stores only hashes of passwords and tokens, and never returns a stored secret except a client's own to the
Python caller that registered it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from servicenow_sandbox.schema import TABLES
from servicenow_sandbox.settings import SandboxSettings
from servicenow_sandbox.store import Store, now_text

SEED_USERS = (("admin", "admin", "System Administrator", "admin"), ("itil", "itil", "ITIL User", "itil"))


class GrantRefused(Exception):
    """The token endpoint refuses the grant (ServiceNow: 401 server_error / access_denied)."""


class ClientRefused(Exception):
    """The client id or secret is wrong."""


class NotAdmin(Exception):
    """The user may log in but lacks the admin role the action needs."""


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    client_secret: str
    name: str


@dataclass(frozen=True)
class Grant:
    access_token: str
    refresh_token: str
    expires_in: int
    user_name: str


@dataclass(frozen=True)
class Caller:
    """Who an API request acts as."""

    user_name: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _password_hash(salt: str, password: str) -> str:
    return hashlib.sha256((salt + "\0" + password).encode()).hexdigest()


class Accounts:
    def __init__(self, store: Store, settings: SandboxSettings, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    def seed(self) -> None:
        """Create the admin and itil users and the default OAuth client, unless they exist (a reused file)."""
        for user_name, password, name, roles in SEED_USERS:
            if not self.store.count(TABLES["sys_user"], "user_name = ?", (user_name,)):
                self.add_user(user_name, password, roles=roles.split(","), name=name)
        self.add_client(self.settings.default_client_id, self.settings.default_client_secret, "ITAM default client")

    # -- users -------------------------------------------------------------------------------

    def add_user(self, user_name: str, password: str, roles: list[str] | tuple[str, ...] = (), name: str = "") -> dict:
        first, _, last = (name or user_name).partition(" ")
        salt = secrets.token_hex(8)
        row = self.store.insert(
            TABLES["sys_user"],
            {
                "user_name": user_name,
                "name": name or user_name,
                "first_name": first,
                "last_name": last,
                "email": f"{user_name}@example.com",
                "active": "true",
                "locked_out": "false",
                "roles": ",".join(roles),
            },
        )
        self.store.execute(
            "INSERT OR REPLACE INTO sandbox_password (user_name, salt, hash) VALUES (?, ?, ?)",
            (user_name, salt, _password_hash(salt, password)),
        )
        return row

    def caller(self, user_name: str) -> Caller | None:
        rows = self.store.select(TABLES["sys_user"], "user_name = ?", (user_name,))
        if not rows or rows[0]["active"] != "true":
            return None
        return Caller(user_name, tuple(r for r in str(rows[0]["roles"]).split(",") if r))

    def check_password(self, user_name: str, password: str) -> Caller | None:
        rows = self.store.execute("SELECT salt, hash FROM sandbox_password WHERE user_name = ?", (user_name,))
        if not rows or not hmac.compare_digest(rows[0]["hash"], _password_hash(rows[0]["salt"], password)):
            return None
        return self.caller(user_name)

    # -- clients -----------------------------------------------------------------------------

    def add_client(self, client_id: str, client_secret: str | None = None, name: str | None = None) -> OAuthClient:
        """Register (or replace) an OAuth client; a secret is generated when none is given."""
        if not client_id or any(c.isspace() for c in client_id):
            raise ValueError("A client id must be non-empty and contain no spaces.")
        client = OAuthClient(client_id, client_secret or secrets.token_urlsafe(24), name or client_id)
        self.store.execute(
            "INSERT OR REPLACE INTO sandbox_client (client_id, client_secret, name, created_on) VALUES (?, ?, ?, ?)",
            (client.client_id, client.client_secret, client.name, now_text()),
        )
        return client

    def clients(self) -> list[OAuthClient]:
        rows = self.store.execute("SELECT client_id, client_secret, name FROM sandbox_client ORDER BY created_on")
        return [OAuthClient(r["client_id"], r["client_secret"], r["name"]) for r in rows]

    def check_client(self, client_id: str, client_secret: str) -> None:
        rows = self.store.execute("SELECT client_secret FROM sandbox_client WHERE client_id = ?", (client_id,))
        if not rows or not hmac.compare_digest(rows[0][0].encode(), (client_secret or "").encode()):
            raise ClientRefused(client_id)

    # -- tokens ------------------------------------------------------------------------------

    def _issue(self, kind: str, user_name: str, client_id: str, lifetime: float, parent: str | None = None) -> str:
        token = secrets.token_urlsafe(64)
        now = self.clock()
        self.store.execute(
            "INSERT INTO sandbox_token (token_hash, kind, user_name, client_id, expires_at, parent_hash, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (_hash(token), kind, user_name, client_id, now + lifetime, parent, now),
        )
        return token

    def _grant(self, user_name: str, client_id: str, refresh_token: str) -> Grant:
        access = self._issue("access", user_name, client_id, self.settings.access_token_seconds, _hash(refresh_token))
        return Grant(access, refresh_token, max(int(self.settings.access_token_seconds) - 1, 0), user_name)

    def grant_password(self, client_id: str, client_secret: str, user_name: str, password: str) -> Grant:
        self.check_client(client_id, client_secret)
        if self.check_password(user_name, password) is None:
            raise GrantRefused("wrong user name or password")
        refresh = self._issue("refresh", user_name, client_id, self.settings.refresh_token_seconds)
        return self._grant(user_name, client_id, refresh)

    def grant_refresh(self, client_id: str, client_secret: str, refresh_token: str) -> Grant:
        self.check_client(client_id, client_secret)
        row = self._live_token(refresh_token, "refresh")
        if row is None or row["client_id"] != client_id or self.caller(row["user_name"]) is None:
            raise GrantRefused("refresh token refused")
        if self.settings.rotate_refresh_tokens:
            self.store.execute("UPDATE sandbox_token SET revoked = 1 WHERE token_hash = ?", (row["token_hash"],))
            refresh_token = self._issue(
                "refresh", row["user_name"], client_id, max(row["expires_at"] - self.clock(), 0.0)
            )
        return self._grant(row["user_name"], client_id, refresh_token)

    def generate_refresh_token(self, user_name: str, password: str, client_id: str | None = None) -> str:
        """What the Generate OAuth Token page does: an admin's refresh token for a registered client."""
        caller = self.check_password(user_name, password)
        if caller is None:
            raise GrantRefused("wrong user name or password")
        if not caller.is_admin:
            raise NotAdmin(user_name)
        client_id = client_id or self.settings.default_client_id
        if not self.store.execute("SELECT 1 FROM sandbox_client WHERE client_id = ?", (client_id,)):
            raise ClientRefused(client_id)
        return self._issue("refresh", user_name, client_id, self.settings.refresh_token_seconds)

    def _live_token(self, token: str, kind: str) -> dict | None:
        rows = self.store.execute(
            "SELECT * FROM sandbox_token WHERE token_hash = ? AND kind = ? AND revoked = 0 AND expires_at > ?",
            (_hash(token), kind, self.clock()),
        )
        return dict(rows[0]) if rows else None

    def authenticate_bearer(self, token: str) -> Caller | None:
        row = self._live_token(token, "access")
        return self.caller(row["user_name"]) if row else None

    def revoke(self, *, token: str | None = None, user: str | None = None, everything: bool = False) -> int:
        """Revoke one token (a refresh token takes its access tokens with it), all of a user's, or all."""
        if token:
            digest = _hash(token)
            sql, params = "token_hash = ? OR parent_hash = ?", (digest, digest)
        elif user:
            sql, params = "user_name = ?", (user,)
        elif everything:
            sql, params = "1 = 1", ()
        else:
            return 0
        with self.store.transaction() as conn:
            return conn.execute(f"UPDATE sandbox_token SET revoked = 1 WHERE revoked = 0 AND ({sql})", params).rowcount

    def expire(self, *, user: str | None = None, kind: str = "access") -> int:
        """Make live tokens (of a user, or all) expire now, as if their lifetime had passed."""
        kinds = ("access", "refresh") if kind == "all" else (kind,)
        sql = "UPDATE sandbox_token SET expires_at = ? WHERE revoked = 0 AND expires_at > ? AND kind IN ({})".format(
            ", ".join("?" for _ in kinds)
        )
        params: list[object] = [self.clock() - 1, self.clock(), *kinds]
        if user:
            sql += " AND user_name = ?"
            params.append(user)
        with self.store.transaction() as conn:
            return conn.execute(sql, params).rowcount

    def token_counts(self) -> dict[str, int]:
        rows = self.store.execute("SELECT kind, COUNT(*) FROM sandbox_token GROUP BY kind")
        return {f"{r[0]}_issued": r[1] for r in rows}
