"""HTTP sessions for ServiceNow that resolve the host once, refuse internal addresses and connect to exactly a checked
address (so DNS rebinding cannot slip past), TLS still verifying the real name; never follows proxies or redirects.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import sys

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
        return sock
    error = last_error or OSError(f"{host} has no address")
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}") from error


class GuardedHTTPConnection(HTTPConnection):
    allow_internal = False

    def _new_conn(self) -> socket.socket:
        return _guarded_new_conn(self, self.allow_internal)


class GuardedHTTPSConnection(HTTPSConnection):
    allow_internal = False

    def _new_conn(self) -> socket.socket:
        return _guarded_new_conn(self, self.allow_internal)


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


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose keep-alive pools use the guarded connections and a default timeout."""

    def __init__(self, *, allow_insecure: bool, timeout: float, pool_maxsize: int = 10) -> None:
        self.allow_insecure = allow_insecure
        self.default_timeout = timeout
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.allow_insecure)

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        raise requests.exceptions.InvalidProxyURL(
            "proxies are not used for ServiceNow: the address check needs them off"
        )

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        return super().send(
            request, stream=stream, timeout=timeout or self.default_timeout, verify=verify, cert=cert, proxies=None
        )


def guard_session(session: requests.Session, *, allow_insecure: bool, timeout: float, pool_maxsize: int = 10) -> None:
    """Mount the guarded adapter on an existing session (also Authlib's OAuth2Session) and switch off env lookups."""
    session.trust_env = False  # no proxies or .netrc from the environment: they would bypass the address check
    session.headers["User-Agent"] = USER_AGENT
    adapter = GuardedAdapter(allow_insecure=allow_insecure, timeout=timeout, pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def make_session(*, allow_insecure: bool, timeout: float, pool_maxsize: int = 10) -> requests.Session:
    """A keep-alive session for one thread that only ever connects to public addresses (unless allow_insecure)."""
    session = requests.Session()
    guard_session(session, allow_insecure=allow_insecure, timeout=timeout, pool_maxsize=pool_maxsize)
    return session
