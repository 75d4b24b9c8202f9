"""Instance URL rules, applied when settings are saved; never resolves names (that happens when connecting)."""

from __future__ import annotations

import ipaddress
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

MAX_URL_LENGTH = 255


class InstanceUrlError(ValueError):
    """The Instance URL breaks a rule; the message tells the tenant admin what to type instead."""


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def host_matches(host: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """True when host matches one of the operator's patterns (`*.service-now.com` matches one or more labels)."""
    return any(fnmatchcase(host, pattern.lower()) for pattern in patterns)


def is_loopback_host(host: str) -> bool:
    """Hosts of this machine: allowed (with http) only when ITAM_SERVICENOW_ALLOW_INSECURE=1, for the sandbox."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalise_instance_url(value: str, allowed_hosts: tuple[str, ...], allow_insecure: bool = False) -> str:
    """Return `https://host[:port]` for a valid Instance URL, or raise InstanceUrlError saying what is wrong."""
    text = (value or "").strip()
    example = "for example https://your-instance.service-now.com"
    if not text:
        raise InstanceUrlError(f"Enter the URL of your ServiceNow instance, {example}.")
    if len(text) > MAX_URL_LENGTH:
        raise InstanceUrlError(f"The Instance URL is too long (at most {MAX_URL_LENGTH} characters).")
    if any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise InstanceUrlError("The Instance URL must not contain spaces or control characters.")
    if "://" not in text:
        raise InstanceUrlError(f"Enter the full address starting with https://, {example}.")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InstanceUrlError(f"This is not a valid URL; {example}.") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (allow_insecure and scheme == "http"):
        raise InstanceUrlError(f"The Instance URL must start with https://, {example}.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InstanceUrlError("Remove the user name from the Instance URL; enter it in Username instead.")
    if parts.query or parts.fragment or text.endswith("?") or "#" in text:
        raise InstanceUrlError(f"Enter only the instance address, without ? or # parts, {example}.")
    if parts.path not in ("", "/"):
        raise InstanceUrlError(f"Enter only the instance address, without a path, {example}.")
    host = (parts.hostname or "").lower()
    if not host:
        raise InstanceUrlError(f"The Instance URL has no host name; {example}.")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InstanceUrlError("The host name of the Instance URL has characters that are not allowed.") from None
    if not (allow_insecure and is_loopback_host(ascii_host)):
        if _is_ip_literal(ascii_host):
            raise InstanceUrlError(f"Enter the instance's host name, not an IP address, {example}.")
        if not host_matches(ascii_host, allowed_hosts):
            allowed = ", ".join(allowed_hosts)
            raise InstanceUrlError(f"The host {ascii_host} is not a ServiceNow instance host; allowed: {allowed}.")
    netloc = ascii_host if not _is_ip_literal(ascii_host) or ":" not in ascii_host else f"[{ascii_host}]"
    default_port = 443 if scheme == "https" else 80
    if port is not None and port != default_port:
        if not 1 <= port <= 65535:
            raise InstanceUrlError("The port of the Instance URL is not valid.")
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}"
