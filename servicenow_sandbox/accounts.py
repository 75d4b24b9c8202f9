"""Users, their roles, OAuth clients and tokens of the sandbox: grants, checks, revocation and expiry.

It stores only hashes of passwords and tokens, and never returns a stored secret except a client's own to the
Python caller that registered it. A user's roles are the ones given plus every role those contain (as ServiceNow's
sys_user_has_role shows them, with `inherited` true for the contained ones).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from servicenow_sandbox.catalog import Catalog, stable_id
from servicenow_sandbox.settings import SandboxSettings
from servicenow_sandbox.store import Store, now_text
from servicenow_sandbox.update_sets import InstalledApp

SEED_USERS = (("admin", "admin", "System Administrator", "admin"), ("itil", "itil", "ITIL User", "itil"))


class GrantRefused(Exception):
    """The token endpoint refuses the grant (ServiceNow: 401 server_error / access_denied)."""


class ClientRefused(Exception):
    """The client id or secret is wrong, or the client has no secret yet."""


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
    """Who an API request acts as: the roles given to the user and, in ``effective``, every role they contain."""

    user_name: str
    roles: tuple[str, ...]
    effective: frozenset[str] = frozenset()
    sys_id: str = ""

    @property
    def is_admin(self) -> bool:
        return "admin" in self.effective or "admin" in self.roles


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _password_hash(salt: str, password: str) -> str:
    return hashlib.sha256((salt + "\0" + password).encode()).hexdigest()


class Accounts:
    def __init__(
        self, store: Store, settings: SandboxSettings, catalog: Catalog, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.settings = settings
        self.catalog = catalog
        self.clock = clock

    def seed(self) -> None:
        """Create the admin and itil users, unless they exist (a reused file). A stock instance has no OAuth client:
        one comes from an installed update set or from add_client (an admin's Application Registry entry)."""
        for user_name, password, name, roles in SEED_USERS:
            if not self.store.count(self.catalog.tables["sys_user"], "user_name = ?", (user_name,)):
                self.add_user(user_name, password, roles=roles.split(","), name=name)

    def install_clients(self, app: InstalledApp) -> None:
        """The OAuth entries an update set brings. They carry no secret; the sandbox plays the ServiceNow admin who
        types in the one the portal's operator gave them: the settings' default secret, for the default client id.
        Any other entry stays without a secret (its grants are refused) until add_client gives it one."""
        for client in app.oauth_clients:
            if not client.active or not client.client_id:
                continue
            if client.client_id == self.settings.default_client_id:
                secret = self.settings.default_client_secret
            else:
                known = self.store.execute(
                    "SELECT client_secret FROM sandbox_client WHERE client_id = ?", (client.client_id,)
                )
                secret = known[0][0] if known else ""
            self._store_client(OAuthClient(client.client_id, secret, client.name))

    # -- users -------------------------------------------------------------------------------

    def add_user(self, user_name: str, password: str, roles: list[str] | tuple[str, ...] = (), name: str = "") -> dict:
        """A local user with a password (the only kind the password grant accepts) and these roles."""
        if not user_name or any(c.isspace() for c in user_name):
            raise ValueError("A user name must be non-empty and contain no spaces.")
        first, _, last = (name or user_name).partition(" ")
        salt = secrets.token_hex(8)
        table = self.catalog.tables["sys_user"]
        values = {
            "user_name": user_name,
            "name": name or user_name,
            "first_name": first,
            "last_name": last,
            "email": f"{user_name}@example.com",
            "active": "true",
            "locked_out": "false",
            "roles": ",".join(roles),
        }
        existing = self.store.select(table, "user_name = ?", (user_name,))
        if existing:
            row = {**existing[0], **values}
            with self.store.transaction() as conn:
                Store.update_rows(conn, table, list(values), [row])
        else:
            row = self.store.insert(table, values)
        self.store.execute(
            "INSERT OR REPLACE INTO sandbox_password (user_name, salt, hash) VALUES (?, ?, ?)",
            (user_name, salt, _password_hash(salt, password)),
        )
        self.refresh_role_records([user_name])
        return row

    def set_roles(self, user_name: str, roles: list[str] | tuple[str, ...]) -> None:
        """Give the user exactly these roles (the contained ones follow)."""
        table = self.catalog.tables["sys_user"]
        if not self.store.count(table, "user_name = ?", (user_name,)):
            raise KeyError(f"the sandbox has no user {user_name!r}")
        self.store.execute("UPDATE sys_user SET roles = ? WHERE user_name = ?", (",".join(roles), user_name))
        self.refresh_role_records([user_name])

    def refresh_role_records(self, user_names: list[str] | None = None) -> None:
        """Rewrite sys_user_has_role for these users (all when None): one row per given role (inherited false) and
        per role those contain (inherited true), as ServiceNow keeps them."""
        users = self.catalog.tables["sys_user"]
        grants = self.catalog.tables["sys_user_has_role"]
        where = f"user_name IN ({', '.join('?' for _ in user_names)})" if user_names else ""
        rows = self.store.select(users, where, tuple(user_names or ()))
        records = []
        for user in rows:
            given = [r for r in str(user["roles"]).split(",") if r]
            for role in sorted(self.catalog.effective_roles(given)):
                inherited = role not in given
                records.append(
                    {
                        "sys_id": stable_id("sys_user_has_role", f"{user['sys_id']}:{role}"),
                        "user": user["sys_id"],
                        "role": stable_id("sys_user_role", role),
                        "inherited": "true" if inherited else "false",
                        "state": "active",
                    }
                )
        with self.store.transaction() as conn:
            for user in rows:
                conn.execute("DELETE FROM sys_user_has_role WHERE user = ?", (user["sys_id"],))
            Store.upsert_rows(conn, grants, records, "system")

    def caller(self, user_name: str) -> Caller | None:
        rows = self.store.select(self.catalog.tables["sys_user"], "user_name = ?", (user_name,))
        if not rows or rows[0]["active"] != "true":
            return None
        given = tuple(r for r in str(rows[0]["roles"]).split(",") if r)
        return Caller(user_name, given, self.catalog.effective_roles(given), str(rows[0]["sys_id"]))

    def check_password(self, user_name: str, password: str) -> Caller | None:
        rows = self.store.execute("SELECT salt, hash FROM sandbox_password WHERE user_name = ?", (user_name,))
        if not rows or not hmac.compare_digest(rows[0]["hash"], _password_hash(rows[0]["salt"], password)):
            return None
        return self.caller(user_name)

    # -- clients -----------------------------------------------------------------------------

    def add_client(self, client_id: str, client_secret: str | None = None, name: str | None = None) -> OAuthClient:
        """Register (or replace) an OAuth client, as an admin does in the Application Registry; a secret is
        generated when none is given."""
        if not client_id or any(c.isspace() for c in client_id):
            raise ValueError("A client id must be non-empty and contain no spaces.")
        if name is None:
            known = self.store.execute("SELECT name FROM sandbox_client WHERE client_id = ?", (client_id,))
            name = known[0][0] if known else client_id
        client = OAuthClient(client_id, client_secret or secrets.token_urlsafe(24), name)
        self._store_client(client)
        return client

    def _store_client(self, client: OAuthClient) -> None:
        self.store.execute(
            "INSERT OR REPLACE INTO sandbox_client (client_id, client_secret, name, created_on) VALUES (?, ?, ?, "
            "COALESCE((SELECT created_on FROM sandbox_client WHERE client_id = ?), ?))",
            (client.client_id, client.client_secret, client.name, client.client_id, now_text()),
        )

    def clients(self) -> list[OAuthClient]:
        rows = self.store.execute("SELECT client_id, client_secret, name FROM sandbox_client ORDER BY created_on")
        return [OAuthClient(r["client_id"], r["client_secret"], r["name"]) for r in rows]

    def check_client(self, client_id: str, client_secret: str) -> None:
        rows = self.store.execute("SELECT client_secret FROM sandbox_client WHERE client_id = ?", (client_id,))
        if not rows or not rows[0][0] or not hmac.compare_digest(rows[0][0].encode(), (client_secret or "").encode()):
            raise ClientRefused(client_id)

    def client_secret(self, client_id: str) -> str | None:
        """The stored secret of a client, for the token page's server-side grant only (never shown)."""
        rows = self.store.execute("SELECT client_secret FROM sandbox_client WHERE client_id = ?", (client_id,))
        return rows[0][0] if rows else None

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
        """What the update set's Generate OAuth Token page does on the server: a password grant with the client's
        stored secret, giving the user's refresh token (any local user; roles decide what the token may do).
        Raises GrantRefused for a wrong password, ClientRefused for an unknown client or one without a secret."""
        client_id = client_id or self.settings.default_client_id
        secret = self.client_secret(client_id)
        if not secret:
            raise ClientRefused(client_id)
        return self.grant_password(client_id, secret, user_name, password).refresh_token

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
