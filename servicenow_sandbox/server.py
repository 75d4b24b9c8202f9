"""Running the sandbox: `SandboxServer` (a background thread, for tests) and `serve()` (the foreground, for the
CLI). Both listen on loopback only and refuse any other host."""

from __future__ import annotations

import ipaddress
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from flask import Flask

from servicenow_sandbox.app import create_sandbox_app, sandbox_state
from servicenow_sandbox.connector import connector_update_set
from servicenow_sandbox.faults import Faults
from servicenow_sandbox.httpd import WSGIServer
from servicenow_sandbox.settings import SandboxSettings
from servicenow_sandbox.state import SandboxState
from servicenow_sandbox.tls import server_context, write_self_signed


def check_loopback(host: str) -> str:
    """host when it is this machine's loopback; ValueError otherwise (the control endpoints have no auth)."""
    if host == "localhost":
        return host
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return host.strip("[]")
    except ValueError:
        pass
    raise ValueError(f"The sandbox only listens on loopback (127.0.0.1, ::1 or localhost), not {host!r}.")


class SandboxServer:
    """A sandbox on 127.0.0.1 in a background thread. Use as a context manager:

    >>> with SandboxServer() as sandbox:
    ...     token = sandbox.generate_refresh_token()
    ...     # point a client at sandbox.url, then: sandbox.wait_idle(); sandbox.records("cmdb_ci_computer")

    What it has installed: by default the connector's own update set, built for the settings' default client id
    (``installed=True``); ``app=<XML text>`` installs that update set instead; ``stock=True`` (or
    ``installed=False``) starts a stock instance with nothing installed (install later with install_update_set or
    the import page /sys_remote_update_set.do).
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        settings: SandboxSettings | None = None,
        app: str | None = None,
        stock: bool = False,
        installed: bool = True,
        tls: bool = False,
        access_log: bool = False,
        **overrides: object,
    ) -> None:
        self.host = check_loopback(host)
        settings = settings or SandboxSettings.from_env()
        if overrides:
            settings = replace(settings, **overrides)
        if app is not None and (stock or not installed):
            raise ValueError("app= installs an update set; a stock sandbox has none")
        if app is None and installed and not stock:
            app = connector_update_set(settings.default_client_id)
        self.app: Flask = create_sandbox_app(settings, app)
        self.state: SandboxState = sandbox_state(self.app)
        self.cert_path: Path | None = None
        self._tempdir: tempfile.TemporaryDirectory | None = None
        context = None
        if tls:
            self._tempdir = tempfile.TemporaryDirectory(prefix="itam-sandbox-tls-")
            self.cert_path, key_path = write_self_signed(self._tempdir.name)
            context = server_context(self.cert_path, key_path)
        self.httpd = WSGIServer(self.host, port, self.app, context, access_log)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.port

    @property
    def url(self) -> str:
        """The instance URL, e.g. http://127.0.0.1:54321 (https with tls=True)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.httpd.tls else 'http'}://{host}:{self.port}"

    @property
    def ca_path(self) -> str | None:
        """With tls=True, the certificate to trust (requests: verify=sandbox.ca_path)."""
        return str(self.cert_path) if self.cert_path else None

    @property
    def faults(self) -> Faults:
        return self.state.faults

    def start(self) -> SandboxServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.httpd.serve_forever, args=(0.01,), name="sandbox-http", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections, stop the transform worker and close the database."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.close_connections()
        self.httpd.server_close()
        self.state.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- shortcuts to the state ------------------------------------------------------------------

    def generate_refresh_token(
        self, username: str = "admin", password: str = "admin", client_id: str | None = None
    ) -> str:
        return self.state.generate_refresh_token(username, password, client_id)

    def records(self, table: str, query: str | None = None) -> list[dict[str, object]]:
        return self.state.records(table, query)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return self.state.wait_idle(timeout)

    def add_client(self, client_id: str, client_secret: str | None = None, name: str | None = None):
        return self.state.add_client(client_id, client_secret, name)

    def revoke_tokens(self, user: str | None = None, token: str | None = None, everything: bool = False) -> int:
        return self.state.revoke_tokens(user=user, token=token, everything=everything)

    def expire_tokens(self, user: str | None = None, kind: str = "access") -> int:
        return self.state.expire_tokens(user=user, kind=kind)

    def set_token_lifetimes(
        self, access_seconds: float | None = None, refresh_seconds: float | None = None, rotate: bool | None = None
    ) -> None:
        self.state.set_token_lifetimes(access_seconds, refresh_seconds, rotate)

    def add_records(
        self, table: str, records: list[dict[str, object]], user_name: str = "system"
    ) -> list[dict[str, object]]:
        """Records another source put straight into a target table (e.g. computers from SCCM: no u_source_id)."""
        return self.state.add_records(table, records, user_name)

    def hold_transforms(self) -> None:
        """Import sets received from now on (and those waiting) are not transformed until release_transforms()."""
        self.state.hold_transforms()

    def release_transforms(self) -> None:
        self.state.release_transforms()

    def set_transform_seconds(
        self, seconds: float | None = None, *, table: str | None = None, jitter: float | None = None
    ) -> None:
        self.state.set_transform_seconds(seconds, table=table, jitter=jitter)

    def install_update_set(self, xml_text: str):
        """Import and commit an update set's XML (see SandboxState.install_update_set); returns what it installed."""
        return self.state.install_update_set(xml_text)

    def add_user(self, user_name: str, password: str, roles: list[str] | tuple[str, ...] = (), name: str = "") -> dict:
        """A local user with these roles (e.g. ["u_itam_integration"]); contained roles follow."""
        return self.state.add_user(user_name, password, roles, name)

    def set_roles(self, user_name: str, roles: list[str] | tuple[str, ...]) -> None:
        self.state.set_roles(user_name, roles)

    def set_read_roles(self, table: str, roles: list[str] | tuple[str, ...] | None) -> None:
        self.state.set_read_roles(table, roles)

    def set_column_mapping(self, staging_table: str, mapping: str | None) -> None:
        self.state.set_column_mapping(staging_table, mapping)

    def set_transform_map_active(self, staging_table: str, active: bool) -> None:
        self.state.set_transform_map_active(staging_table, active)

    def reset(self) -> None:
        """Clear faults and forget imported records (users, clients, tokens stay): for a server shared by tests."""
        self.state.faults.clear()
        self.state.reset_data()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(server: SandboxServer, on_ready: Callable[[SandboxServer], None] | None = None) -> None:
    """Serve in the foreground until interrupted (Ctrl-C or SIGTERM), then stop cleanly."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    if on_ready is not None:
        on_ready(server)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
