"""The connect-time Instance URL check on real sockets: internal addresses refused, the checked address is the one
connected to, TLS verifies the real host name, and keep-alive still works."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from itam_admin.servicenow import errors, transport
from itam_admin.servicenow.client import ServiceNowClient
from itam_admin.servicenow.errors import ErrorKind, ServiceNowError
from itam_admin.servicenow.oauth import Credentials, TokenManager

HOST = "acme.service-now.com"


@pytest.fixture
def resolver(monkeypatch):
    """Make names resolve to the addresses a test says; records every lookup."""
    table: dict[str, list[str]] = {}
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    monkeypatch.setattr(transport, "resolve_host", resolve)
    return type("Resolver", (), {"table": table, "lookups": lookups})


@pytest.fixture
def no_connect(monkeypatch):
    """Record connection attempts and refuse them, so no test leaves this machine."""
    attempts: list[tuple[str, int]] = []

    def refuse(address, *args, **kwargs):
        attempts.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(transport.urllib3_connection, "create_connection", refuse)
    return attempts


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_GET(self) -> None:
        self.server.hosts.append(self.headers["Host"])
        body = json.dumps({"result": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def local_server():
    servers: list[ThreadingHTTPServer] = []

    def start(context: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.connections, server.hosts, server.daemon_threads = 0, [], True
        if context is not None:
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["10.20.30.40"], ["169.254.169.254"], ["::1"], ["192.168.1.5"], ["93.184.216.34", "10.0.0.1"]],
)
def test_a_host_resolving_to_an_internal_address_is_refused(resolver, no_connect, addresses):
    resolver.table[HOST] = addresses
    session = transport.make_session(allow_insecure=False, timeout=2)

    with pytest.raises(ServiceNowError) as caught:
        session.get(f"https://{HOST}/api/now/table/sys_user")

    assert caught.value.kind is ErrorKind.INTERNAL_ADDRESS and caught.value.stops_run
    assert HOST in caught.value.message
    assert no_connect == []


def test_the_socket_goes_to_exactly_the_checked_address(resolver, no_connect):
    resolver.table[HOST] = ["93.184.216.34"]
    session = transport.make_session(allow_insecure=False, timeout=2)

    with pytest.raises(requests.ConnectionError) as caught:
        session.get(f"https://{HOST}/api/now/table/sys_user")

    assert no_connect == [("93.184.216.34", 443)]  # an address, never the name: no second lookup to rebind
    assert resolver.lookups == [HOST]
    assert errors.from_exception(caught.value, HOST).kind is ErrorKind.CONNECTION_REFUSED


def test_internal_addresses_are_allowed_with_allow_insecure_and_keep_alive_works(resolver, local_server):
    server = local_server()
    port = server.server_address[1]
    resolver.table[HOST] = ["127.0.0.1"]
    session = transport.make_session(allow_insecure=True, timeout=2)

    answers = [session.get(f"http://{HOST}:{port}/api/now/table/sys_user") for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert server.connections == 1
    assert server.hosts == [f"{HOST}:{port}"] * 3


def _certificates(tmp_path, name: str) -> tuple[ssl.SSLContext, str]:
    """A throwaway CA and a server certificate for `name`; returns the server context and the CA file."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, str(ca_file)


def test_tls_verifies_the_real_host_name_while_connecting_to_the_checked_address(resolver, local_server, tmp_path):
    context, ca_file = _certificates(tmp_path, HOST)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    port = local_server(context).server_address[1]
    resolver.table.update({HOST: ["127.0.0.1"], "other.service-now.com": ["127.0.0.1"]})
    session = transport.make_session(allow_insecure=True, timeout=2)
    session.verify = ca_file

    assert session.get(f"https://{HOST}:{port}/api/now/table/sys_user").status_code == 200
    assert names == [HOST]

    with pytest.raises(requests.exceptions.SSLError) as caught:
        session.get(f"https://other.service-now.com:{port}/api/now/table/sys_user")
    assert errors.from_exception(caught.value, "other.service-now.com").kind is ErrorKind.TLS


@pytest.fixture(autouse=True)
def transport_secrets(secrets):
    secrets.update({"refresh-transport-0001", "client-id-x1", "client-secret-x1"})


def _creds(instance_url: str) -> Credentials:
    return Credentials(instance_url, "itam.export", "refresh-transport-0001", "client-id-x1", "client-secret-x1", False)


def test_the_client_refuses_an_instance_on_an_internal_address(resolver, no_connect, crypto):
    resolver.table[HOST] = ["169.254.169.254"]
    tokens = TokenManager(None, crypto, timeout=2, allow_insecure=False)
    client = ServiceNowClient(
        "t", _creds(f"https://{HOST}"), tokens, timeout=2, allow_insecure=False, sleep=pytest.fail
    )

    with pytest.raises(ServiceNowError) as caught:
        client.check_connection()

    assert caught.value.kind is ErrorKind.INTERNAL_ADDRESS and caught.value.stops_run
    assert no_connect == []


def test_the_client_reports_an_unknown_host_without_retrying(resolver, crypto):
    tokens = TokenManager(None, crypto, timeout=2, allow_insecure=False)
    client = ServiceNowClient(
        "t", _creds("https://nowhere.service-now.com"), tokens, timeout=2, allow_insecure=False, sleep=pytest.fail
    )

    with pytest.raises(ServiceNowError) as caught:
        client.check_connection()

    assert caught.value.kind is ErrorKind.HOST_NOT_FOUND and caught.value.stops_run
    assert "nowhere.service-now.com could not be found" in caught.value.message


def test_the_client_reports_a_refused_connection(resolver, crypto):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    resolver.table[HOST] = ["127.0.0.1"]
    tokens = TokenManager(None, crypto, timeout=2, allow_insecure=True)
    client = ServiceNowClient(
        "t", _creds(f"https://{HOST}:{port}"), tokens, timeout=2, allow_insecure=True, sleep=pytest.fail
    )

    with pytest.raises(ServiceNowError) as caught:
        client.check_connection()

    assert caught.value.kind is ErrorKind.CONNECTION_REFUSED and caught.value.stops_run
