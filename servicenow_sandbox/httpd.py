"""A small threaded HTTP/1.1 WSGI server with keep-alive (werkzeug's development server closes every
connection) and the ability to drop a connection without answering, for fault tests. Loopback use only."""

from __future__ import annotations

import socket
import socketserver
import ssl
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import unquote_to_bytes

MAX_DRAIN = 64 * 1024 * 1024  # unread request bodies up to this are read and discarded to keep the connection


class DropConnection(ConnectionAbortedError):
    """Raised by the app to have the server close the connection without any answer."""


class _Body:
    """wsgi.input: at most Content-Length bytes; sends `100 Continue` before the first read when asked for."""

    def __init__(self, handler: WSGIHandler, length: int, expect_continue: bool) -> None:
        self._handler = handler
        self.remaining = length
        self._expect_continue = expect_continue

    @property
    def expecting_continue(self) -> bool:
        return self._expect_continue

    def _continue(self) -> None:
        if self._expect_continue:
            self._expect_continue = False
            self._handler.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._handler.wfile.flush()

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        self._continue()
        size = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self._handler.rfile.read(size)
        self.remaining -= len(data)
        if not data:
            self.remaining = 0
        return data

    def readline(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        self._continue()
        limit = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self._handler.rfile.readline(limit)
        self.remaining -= len(data)
        return data

    def __iter__(self):
        while line := self.readline():
            yield line


class WSGIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection is closed after this many seconds
    server: WSGIServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError):
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        return True  # `100 Continue` is sent by _Body when the app first reads, so a refusal needs no body

    def log_message(self, format: str, *args: object) -> None:
        if self.server.access_log:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def handle_one_request(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        self.run_wsgi()
        self.wfile.flush()

    def _environ(self, body: _Body) -> dict:
        path, _, query = self.path.partition("?")
        environ = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": self.server.server_address[0],
            "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": str(self.client_address[1]),
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(body.remaining) if "Content-Length" in self.headers else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self.server.tls else "http",
            "wsgi.input": body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _send(self, status: str, headers: list[tuple[str, str]], chunks: list[bytes]) -> None:
        body = b"".join(chunks)
        names = {name.lower() for name, _ in headers}
        lines = [f"{self.protocol_version} {status}", f"Date: {self.date_time_string()}", "Server: ServiceNow"]
        lines += [f"{name}: {value}" for name, value in headers if name.lower() not in ("date", "server")]
        if "content-length" not in names and self.command != "HEAD":
            lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close" if self.close_connection else "Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + (b"" if self.command == "HEAD" else body))
        self.log_request(status.split(" ", 1)[0], len(body))

    def run_wsgi(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self.close_connection = True
            self._send("411 Length Required", [("Content-Type", "text/plain")], [b"Send a Content-Length."])
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send("400 Bad Request", [("Content-Type", "text/plain")], [b"Bad Content-Length."])
            return
        expect = self.headers.get("Expect", "").lower() == "100-continue"
        body = _Body(self, length, expect)
        response: list = []

        def start_response(status, headers, exc_info=None):
            response[:] = [status, headers]
            return lambda data: None

        try:
            chunks = list(self.server.app(self._environ(body), start_response))
        except DropConnection:
            self.close_connection = True
            self._drop()
            return
        except Exception:
            traceback.print_exc()
            response[:] = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
            chunks = [b"Internal Server Error"]
        # An unread body must be read past before the next request on this connection, unless the client is
        # still waiting for `100 Continue` (it sends nothing more) or the body is too big to bother: then close.
        if body.remaining and (body.expecting_continue or body.remaining > MAX_DRAIN):
            self.close_connection = True
        self._send(response[0], response[1], chunks)
        if body.remaining and not self.close_connection:
            while body.read(65536):
                pass

    def _drop(self) -> None:
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class WSGIServer(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, app, ssl_context: ssl.SSLContext | None = None, access_log: bool = False):
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), WSGIHandler)
        self.app = app
        self.tls = ssl_context is not None
        self.access_log = access_log
        self._connections: set[socket.socket] = set()
        self.connections_accepted = 0
        self._connections_lock = threading.Lock()
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def track(self, connection: socket.socket, add: bool) -> None:
        with self._connections_lock:
            if add:
                self.connections_accepted += 1
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Close every open (keep-alive) connection, so stopping never waits on idle clients."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        if sys.exc_info()[0] not in (ConnectionError, TimeoutError, ssl.SSLError, OSError):
            super().handle_error(request, client_address)
