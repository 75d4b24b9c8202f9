"""A tiny ServiceNow stand-in on 127.0.0.1 for Test connection tests: it records every request it gets and answers
the token grant (optionally with a rotated refresh token, or not at all), the sys_user lookup and Table API reads of
the tables it is given (by default the update set's three staging tables, empty); any other table answers as
ServiceNow does for a table it lacks, 400 "Invalid table <name>" (SERVICENOW-FACTS). Never used outside tests."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ADMIN_ROW = {
    "user_name": "admin",
    "name": "System Administrator",
    "sys_id": "6816f79cc0a8016401c5a33be04be441",
    "roles": "admin",
}


STAGING_TABLES = ("u_itam_hardware_inventory", "u_itam_contracts", "u_itam_installed_applications")


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    raw: str = field(repr=False)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:  # keep test output quiet
        pass

    def _record(self) -> Seen:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("latin-1") if length else ""
        parts = urlsplit(self.path)
        seen = Seen(
            self.command, parts.path, parse_qs(parts.query), parse_qs(body), f"{self.path}\n{self.headers}{body}"
        )
        self.server.seen.append(seen)
        return seen

    def _answer(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        seen = self._record()
        if self.server.silent:
            time.sleep(60)  # a server that takes the request and never answers
            return
        if seen.path != "/oauth_token.do":
            self._answer(404, {"error": {"message": "No such path"}})
            return
        answer = {"access_token": "stand-in-access-token", "token_type": "Bearer", "expires_in": 1799, "scope": ""}
        if self.server.rotate_to:
            answer["refresh_token"] = self.server.rotate_to
        self._answer(200, answer)

    def do_GET(self) -> None:
        seen = self._record()
        table = seen.path.removeprefix("/api/now/table/") if seen.path.startswith("/api/now/table/") else None
        tables = self.server.tables
        if table is None:
            self._answer(404, {"error": {"message": "No such path"}})
        elif table in tables and isinstance(tables[table], int):  # e.g. 403: the user may not read it
            self._answer(tables[table], {"error": {"message": "User Not Authorized", "detail": None}})
        elif table in tables:
            self._answer(200, {"result": tables[table]})
        elif table == "sys_user":
            self._answer(200, {"result": [ADMIN_ROW]})
        else:
            self._answer(400, {"error": {"message": f"Invalid table {table}", "detail": None}, "status": "failure"})


class StandIn:
    """`with StandIn() as server:` serves on server.url until the block ends."""

    def __init__(
        self, rotate_to: str | None = None, silent: bool = False, tables: dict[str, list[dict] | int] | None = None
    ) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.seen = []
        self._server.rotate_to = rotate_to
        self._server.silent = silent
        # table -> the rows any read answers (the test gives what the query would find), or an error status
        self._server.tables = {name: [] for name in STAGING_TABLES} if tables is None else tables
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def seen(self) -> list[Seen]:
        return list(self._server.seen)

    def received(self, text: str) -> bool:
        """True when any request this server got carried `text` (path, headers or body)."""
        return any(text in seen.raw for seen in self._server.seen)

    def __enter__(self) -> StandIn:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._server.server_close()
