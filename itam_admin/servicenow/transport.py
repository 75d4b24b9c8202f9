"""HTTP sessions for ServiceNow that resolve the host once, refuse internal addresses and connect to exactly a checked
address (so DNS rebinding cannot slip past), TLS still verifying the real name; never follows proxies or redirects.
Every request ends by a deadline (connect to last byte) and no answer is read past a size cap, whatever the server does.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import ipaddress
import itertools
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from itam_admin.servicenow import errors

log = logging.getLogger("itam_admin.servicenow")

USER_AGENT = "itam-servicenow-connector"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# ServiceNow cancels a REST or Import Set request after its 60 s transaction quota; twice that leaves room for
# sending a 5 MB batch over a slow link and for the answer, and still ends a request stuck on a stalled server.
DEFAULT_DEADLINE_SECONDS = 120.0
# The answers this portal asks for are small (a token, one sys_user row, at most 500 sys_import_set_run rows: well
# under 1 MB), and ServiceNow itself caps REST bodies at 10 MB (glide.rest.max_content_length): 8 MiB is ample.
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
READ_CHUNK_BYTES = 16 * 1024


# ---- deadlines ------------------------------------------------------------------------------------------------

_local = threading.local()  # .scopes: [(monotonic deadline, seconds)], .watch: the _Watch of the request in flight


def _scopes() -> list[tuple[float, float]]:
    scopes = getattr(_local, "scopes", None)
    if scopes is None:
        scopes = _local.scopes = []
    return scopes


@contextlib.contextmanager
def deadline_scope(seconds: float | None) -> Iterator[None]:
    """Every ServiceNow request this thread makes inside the block (token, REST, retries) ends within `seconds` from
    now; nested scopes keep the earliest end. None: no limit beyond each request's own deadline."""
    if seconds is None:
        yield
        return
    scopes = _scopes()
    entry = (time.monotonic() + max(0.0, seconds), seconds)
    if scopes and scopes[-1][0] < entry[0]:
        entry = scopes[-1]
    scopes.append(entry)
    try:
        yield
    finally:
        scopes.pop()


@contextlib.contextmanager
def inherited_deadline(scope: tuple[float, float] | None) -> Iterator[None]:
    """Another thread's deadline (from its current_deadline()) for the block: work handed to a helper thread ends
    when the caller's call must."""
    if scope is None:
        yield
        return
    scopes = _scopes()
    scopes.append(scope)
    try:
        yield
    finally:
        scopes.pop()


def current_deadline() -> tuple[float, float] | None:
    """(monotonic time, length in seconds) of the innermost deadline_scope of this thread, or None."""
    scopes = _scopes()
    return scopes[-1] if scopes else None


def time_left() -> float | None:
    """Seconds left in this thread's deadline_scope (never negative), or None without one."""
    scope = current_deadline()
    return None if scope is None else max(0.0, scope[0] - time.monotonic())


class _Watch:
    """The sockets of one request in flight; when its deadline passes they are shut down, which ends any read or
    TLS handshake blocked on them (a server trickling a byte a second never trips a per-read timeout)."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.fired = False
        self.done = False
        self._lock = threading.Lock()
        self._socks: dict[int, socket.socket] = {}  # watched fd -> our own duplicate of it

    def add(self, sock: socket.socket) -> None:
        try:
            fd = sock.fileno()
            if fd < 0 or fd in self._socks:
                return
            # A duplicate descriptor of our own: shutting it down ends the connection, and it is never a
            # descriptor that was closed and reused for something else meanwhile.
            dup = socket.fromfd(fd, sock.family, sock.type)
        except OSError:
            return
        with self._lock:
            if self.done:
                dup.close()
                return
            self._socks[fd] = dup
            if self.fired:
                _shutdown(dup)

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.fired = True
            for dup in self._socks.values():
                _shutdown(dup)

    def close(self) -> None:
        with self._lock:
            self.done = True
            socks, self._socks = list(self._socks.values()), {}
        for dup in socks:
            dup.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread per process that fires each request's watch at its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, watch: _Watch) -> None:
        with self._cond:
            if len(self._heap) > 4096:  # finished watches wait in the heap until their time: drop them
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, (watch.at, next(self._order), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="servicenow-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2].done:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        due = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(wait)
            due.fire()


_watchdog = _Watchdog()


def _new_watchdog_after_fork() -> None:
    global _watchdog
    _watchdog = _Watchdog()  # RQ forks a work horse per job: the parent's thread does not exist there


os.register_at_fork(after_in_child=_new_watchdog_after_fork)


def _watch_socket(sock: socket.socket | None) -> None:
    watch = getattr(_local, "watch", None)
    if watch is not None and sock is not None:
        watch.add(sock)


def resolve_host(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order (tests replace this function)."""
    family = urllib3_connection.allowed_gai_family()
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in socket.getaddrinfo(host, port, family, socket.SOCK_STREAM):
        if sockaddr[0] not in addresses:
            addresses.append(sockaddr[0])
    return addresses


def is_public_address(address: str) -> bool:
    """True only for a globally routable unicast address, looking inside IPv4-in-IPv6 forms too."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    bad = (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )
    if bad:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return all(is_public_address(str(v4)) for v4 in embedded if v4 is not None)
    return True


def _guarded_new_conn(conn: HTTPConnection, allow_internal: bool) -> socket.socket:
    """Resolve once, refuse internal addresses, then connect to one of exactly those addresses."""
    host = conn._dns_host.rstrip(".")
    try:
        addresses = resolve_host(host, conn.port)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    if not allow_internal:
        refused = [address for address in addresses if not is_public_address(address)]
        if refused:
            log.warning("refused to connect to %s: it resolves to internal address(es) %s", host, ", ".join(refused))
            raise errors.internal_address(host)
    last_error: OSError | None = None
    for address in addresses:
        try:
            sock = urllib3_connection.create_connection(
                (address, conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                conn, f"Connection to {host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            last_error = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        _watch_socket(sock)
        return sock
    error = last_error or OSError(f"{host} has no address")
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}") from error


class GuardedHTTPConnection(HTTPConnection):
    allow_internal = False

    def _new_conn(self) -> socket.socket:
        return _guarded_new_conn(self, self.allow_internal)

    def request(self, *args, **kwargs) -> None:
        _watch_socket(self.sock)  # a kept-alive connection: its socket was made for an earlier request
        super().request(*args, **kwargs)


class GuardedHTTPSConnection(HTTPSConnection):
    allow_internal = False

    def _new_conn(self) -> socket.socket:
        return _guarded_new_conn(self, self.allow_internal)

    def request(self, *args, **kwargs) -> None:
        _watch_socket(self.sock)
        super().request(*args, **kwargs)


@functools.cache
def _pool_classes(allow_internal: bool) -> dict[str, type[HTTPConnectionPool]]:
    classes: dict[str, type[HTTPConnectionPool]] = {}
    for scheme, pool_cls, conn_cls in (
        ("http", HTTPConnectionPool, GuardedHTTPConnection),
        ("https", HTTPSConnectionPool, GuardedHTTPSConnection),
    ):
        connection = type(conn_cls.__name__, (conn_cls,), {"allow_internal": allow_internal})
        classes[scheme] = type(f"Guarded{pool_cls.__name__}", (pool_cls,), {"ConnectionCls": connection})
    return classes


def _read_body(response: requests.Response, at: float, limit: int, host: str) -> None:
    """Read the whole answer into `response` in chunks, refusing it past `limit` bytes or past the deadline."""
    length = (response.headers.get("Content-Length") or "").strip()
    if length.isdigit() and int(length) > limit:
        response.close()
        raise errors.response_too_large(host, limit)
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_content(READ_CHUNK_BYTES):
            total += len(chunk)
            if total > limit:
                raise errors.response_too_large(host, limit)
            if time.monotonic() >= at:
                raise TimeoutError("deadline passed while reading the answer")
            chunks.append(chunk)
    except BaseException:
        response.close()  # not read to its end: the connection must not go back to the pool
        raise
    response._content = b"".join(chunks)


def _bounded(timeout: float | tuple | None, default: float, budget: float) -> float | tuple[float, float]:
    """The per-operation timeout requests applies, never longer than what is left of the deadline."""
    if isinstance(timeout, tuple):
        return tuple(min(part if part is not None else default, budget) for part in timeout)
    return min(timeout or default, budget)


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose keep-alive pools use the guarded connections, with a per-operation timeout, a deadline
    for the whole request (connect to last byte) and a cap on the answer's size; answers are always read whole here.
    """

    def __init__(
        self,
        *,
        allow_insecure: bool,
        timeout: float,
        pool_maxsize: int = 10,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.allow_insecure = allow_insecure
        self.default_timeout = timeout
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.allow_insecure)

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        raise requests.exceptions.InvalidProxyURL(
            "proxies are not used for ServiceNow: the address check needs them off"
        )

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        host = urlsplit(request.url).netloc
        start = time.monotonic()
        at, seconds = start + self.deadline, self.deadline
        scope = current_deadline()
        if scope is not None and scope[0] < at:
            at, seconds = scope
        if at - start <= 0:
            raise errors.deadline_passed(host, seconds)
        watch = _Watch(at)
        previous, _local.watch = getattr(_local, "watch", None), watch
        _watchdog.add(watch)
        try:
            # Always streamed, then read here in chunks: the size cap and the deadline hold for every caller.
            response = super().send(
                request,
                stream=True,
                timeout=_bounded(timeout, self.default_timeout, at - start),
                verify=verify,
                cert=cert,
                proxies=None,
            )
            _read_body(response, at, self.max_response_bytes, host)
            if watch.fired:
                # Shut down mid-answer, http.client takes the end of the stream for the end of the headers or of a
                # body without Content-Length: what arrived may look complete but is not.
                raise TimeoutError("deadline passed while the answer arrived")
            return response
        except errors.ServiceNowError:
            raise
        except Exception as exc:
            if watch.fired or time.monotonic() >= at:
                log.info("%s: no complete answer within %.0f s", host, seconds)
                raise errors.deadline_passed(host, seconds) from exc
            raise
        finally:
            _local.watch = previous
            watch.close()


def guard_session(
    session: requests.Session,
    *,
    allow_insecure: bool,
    timeout: float,
    pool_maxsize: int = 10,
    deadline: float = DEFAULT_DEADLINE_SECONDS,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> None:
    """Mount the guarded adapter on an existing session (also Authlib's OAuth2Session) and switch off env lookups."""
    session.trust_env = False  # no proxies or .netrc from the environment: they would bypass the address check
    session.max_redirects = 0  # a redirect is an answer to classify, never a request to make
    session.headers["User-Agent"] = USER_AGENT
    adapter = GuardedAdapter(
        allow_insecure=allow_insecure,
        timeout=timeout,
        pool_maxsize=pool_maxsize,
        deadline=deadline,
        max_response_bytes=max_response_bytes,
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def make_session(
    *,
    allow_insecure: bool,
    timeout: float,
    pool_maxsize: int = 10,
    deadline: float = DEFAULT_DEADLINE_SECONDS,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> requests.Session:
    """A keep-alive session for one thread that only ever connects to public addresses (unless allow_insecure)."""
    session = requests.Session()
    guard_session(
        session,
        allow_insecure=allow_insecure,
        timeout=timeout,
        pool_maxsize=pool_maxsize,
        deadline=deadline,
        max_response_bytes=max_response_bytes,
    )
    return session
