"""Hostile ServiceNow stand-ins for tests: a tiny HTTP server on 127.0.0.1 in a thread, each path answered by a
behaviour a test picks (trickle a byte at a time, never answer, send 400 MB, redirect, absurd token lifetimes)."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

TRICKLE_INTERVAL = 0.2


@dataclass
class Request:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes


@dataclass
class Exchange:
    """One request on one connection; behaviours write the answer with `send`."""

    sock: socket.socket
    request: Request
    stopping: threading.Event
    keep_alive: bool = field(default=True)

    def send(self, data: bytes) -> bool:
        """False once the client has gone away (or the test is over)."""
        if self.stopping.is_set():
            return False
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        reason = {200: "OK", 302: "Found", 404: "Not Found"}.get(status, "Status")
        lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def json(self, status: int, payload: object) -> None:
        self.answer(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def trickle(self, data: bytes) -> None:
        """Send one byte every TRICKLE_INTERVAL until the data ends or the client leaves."""
        for index in range(len(data)):
            if not self.send(data[index : index + 1]):
                return
            time.sleep(TRICKLE_INTERVAL)


Behaviour = Callable[[Exchange], None]


# ---- behaviours ------------------------------------------------------------------------------------------------


def token(expires_in: object = 1799, *, raw: str | None = None, refresh_token: str | None = None) -> Behaviour:
    """oauth_token.do answering a token; `raw` replaces the JSON text of expires_in (e.g. `1e400`)."""

    def behave(exchange: Exchange) -> None:
        answer = {
            "access_token": "hostile-access-token-0001",
            "refresh_token": refresh_token or "hostile-refresh-token-0001",
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": "__EXPIRES__",
        }
        text = json.dumps(answer).replace('"__EXPIRES__"', raw if raw is not None else json.dumps(expires_in))
        exchange.answer(200, text.encode(), {"Content-Type": "application/json"})

    return behave


def rows(*result: dict) -> Behaviour:
    def behave(exchange: Exchange) -> None:
        exchange.json(200, {"result": list(result)})

    return behave


def trickle_headers(exchange: Exchange) -> None:
    """A status line, then a header one byte at a time, forever: no read ever waits long enough to time out."""
    if exchange.send(b"HTTP/1.1 200 OK\r\n"):
        exchange.trickle(b"X-Slow: " + b"z" * 100_000)
    exchange.keep_alive = False


def trickle_body(exchange: Exchange) -> None:
    """Headers at once, then the promised megabyte one byte at a time."""
    if exchange.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"):
        exchange.trickle(b'{"result": [' + b" " * 999_000)
    exchange.keep_alive = False


def silent(exchange: Exchange) -> None:
    """Read the request and never answer."""
    exchange.stopping.wait(120)
    exchange.keep_alive = False


def huge(size: int, *, content_length: bool) -> Behaviour:
    """`size` bytes of answer, generated while sent (with or without saying how long it will be)."""

    def behave(exchange: Exchange) -> None:
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {size}\r\n" if content_length else "Connection: close\r\n"
        if not exchange.send((head + "\r\n").encode()):
            return
        block = b" " * 65536
        sent = 0
        while sent < size and exchange.send(block[: min(len(block), size - sent)]):
            sent += len(block)
        exchange.keep_alive = False

    return behave


def redirect(location: str) -> Behaviour:
    def behave(exchange: Exchange) -> None:
        body = b"<html><body>Please log in</body></html>"
        exchange.answer(302, body, {"Location": location, "Content-Type": "text/html"})

    return behave


# ---- the server ------------------------------------------------------------------------------------------------


class HostileServer:
    """Answers each path (query string left out) with its behaviour; records every connection and request."""

    def __init__(self) -> None:
        self.routes: dict[str, Behaviour] = {}
        self.requests: list[Request] = []
        self.connections = 0
        self.stopping = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                outer._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def paths(self) -> list[str]:
        return [request.path.split("?")[0] for request in self.requests]

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(0.2)
        reader = _Reader(sock, self.stopping)
        while not self.stopping.is_set():
            request = reader.request()
            if request is None:
                return
            self.requests.append(request)
            exchange = Exchange(sock, request, self.stopping)
            behaviour = self.routes.get(request.path.split("?")[0])
            if behaviour is None:
                exchange.json(404, {"error": {"message": "No such path", "detail": request.path}})
            else:
                behaviour(exchange)
            if not exchange.keep_alive:
                return


class _Reader:
    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self._sock = sock
        self._stopping = stopping
        self._buffer = b""

    def _fill(self) -> bool:
        while not self._stopping.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return False
            if not data:
                return False
            self._buffer += data
            return True
        return False

    def request(self) -> Request | None:
        while b"\r\n\r\n" not in self._buffer:
            if not self._fill():
                return None
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(self._buffer) < length:
            if not self._fill():
                return None
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return Request(method, path, headers, body)
