"""The one Instance URL rule, applied where settings are saved and again where a client connects: parse once, check
the host as a host name and rebuild the URL from what was checked. Never resolves names (that happens at connect).
"""

from __future__ import annotations

import ipaddress
import re
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

import idna

MAX_URL_LENGTH = 255
MAX_HOST_LENGTH = 253
EXAMPLE = "for example https://your-instance.service-now.com"
# One DNS label: letters, digits and hyphens, not starting or ending with a hyphen, at most 63 characters.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# The authority once user info is ruled out: a host (or a bracketed IPv6 literal) and an optional port.
_NETLOC = re.compile(r"(?P<host>\[[^\[\]]*\]|[^\[\]:]*)(?::(?P<port>[^:]*))?")


class InstanceUrlError(ValueError):
    """The Instance URL breaks a rule; the message tells the tenant admin what to type instead."""


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def host_matches(host: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """True when host matches one of the operator's patterns (`*.service-now.com` matches one or more labels)."""
    return any(fnmatchcase(host, pattern.lower()) for pattern in patterns)


def is_loopback_host(host: str) -> bool:
    """Hosts of this machine: allowed (with http) only when ITAM_SERVICENOW_ALLOW_INSECURE=1, for the sandbox."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = _ip_literal(host)
    return ip is not None and ip.is_loopback


def _ascii_host(host: str) -> str:
    """The host in ASCII (IDNA 2008 / UTS 46 for international names), or InstanceUrlError."""
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host, uts46=True, std3_rules=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise InstanceUrlError(
            "The host name of the Instance URL has characters that are not allowed; "
            f"use letters, digits, hyphens and dots, {EXAMPLE}."
        ) from None


def _check_host_name(host: str) -> None:
    """Letters, digits and hyphens in dot-separated labels: what DNS and TLS certificates allow, nothing else."""
    if len(host) > MAX_HOST_LENGTH:
        raise InstanceUrlError(f"The host name of the Instance URL is too long (at most {MAX_HOST_LENGTH} characters).")
    for label in host.split("."):
        if not label:
            raise InstanceUrlError(f"The host name of the Instance URL has two dots in a row, {EXAMPLE}.")
        if len(label) > 63:
            raise InstanceUrlError("A part of the host name between dots is too long (at most 63 characters).")
        if _LABEL.fullmatch(label):
            continue
        if label.startswith("-") or label.endswith("-"):
            raise InstanceUrlError(
                f"A part of the host name between dots must not start or end with a hyphen (-), {EXAMPLE}."
            )
        bad = next((ch for ch in label if not (ch.isascii() and (ch.isalnum() or ch == "-"))), "")
        shown = f" (found {bad!r})" if bad.isprintable() and bad.isascii() else ""
        raise InstanceUrlError(
            f"The host name of the Instance URL can contain only letters, digits, hyphens and dots{shown}; {EXAMPLE}."
        )
    if host.rsplit(".", 1)[-1].isdigit():
        # getaddrinfo reads "127.1" or "2130706433" as an IPv4 address: never a host name.
        raise InstanceUrlError(f"Enter the instance's host name, not an IP address, {EXAMPLE}.")


def normalise_instance_url(value: str, allowed_hosts: tuple[str, ...], allow_insecure: bool = False) -> str:
    """Return `https://host[:port]` rebuilt from the checked parts of an Instance URL, or raise InstanceUrlError
    saying what is wrong. The same rule is applied when the settings are saved and when a client is built."""
    text = (value or "").strip()
    if not text:
        raise InstanceUrlError(f"Enter the URL of your ServiceNow instance, {EXAMPLE}.")
    if len(text) > MAX_URL_LENGTH:
        raise InstanceUrlError(f"The Instance URL is too long (at most {MAX_URL_LENGTH} characters).")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InstanceUrlError("The Instance URL must not contain spaces or control characters.")
    # Parsers disagree on these (requests reads `evil.com\.service-now.com` as host evil.com): refuse them outright.
    if "\\" in text:
        raise InstanceUrlError(f"The Instance URL must not contain a backslash (\\), {EXAMPLE}.")
    if "%" in text:
        raise InstanceUrlError(f"The Instance URL must not contain percent-escapes such as %2f; {EXAMPLE}.")
    if "://" not in text:
        raise InstanceUrlError(f"Enter the full address starting with https://, {EXAMPLE}.")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise InstanceUrlError(f"This is not a valid URL; {EXAMPLE}.") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (allow_insecure and scheme == "http"):
        raise InstanceUrlError(f"The Instance URL must start with https://, {EXAMPLE}.")
    if "@" in parts.netloc:
        raise InstanceUrlError("Remove the user name from the Instance URL; enter it in Username instead.")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise InstanceUrlError(f"Enter only the instance address, without ? or # parts, {EXAMPLE}.")
    if parts.path not in ("", "/"):
        raise InstanceUrlError(f"Enter only the instance address, without a path, {EXAMPLE}.")
    authority = _NETLOC.fullmatch(parts.netloc)
    if authority is None:
        raise InstanceUrlError(f"This is not a valid URL; {EXAMPLE}.")
    host, port_text = authority.group("host"), authority.group("port")
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]  # the fully qualified form names the same host
    if not host:
        raise InstanceUrlError(f"The Instance URL has no host name; {EXAMPLE}.")

    ip = _ip_literal(host)
    if host.startswith("[") and ip is None:
        raise InstanceUrlError(f"This is not a valid URL; {EXAMPLE}.")
    if ip is not None:
        if not (allow_insecure and ip.is_loopback):
            raise InstanceUrlError(f"Enter the instance's host name, not an IP address, {EXAMPLE}.")
        netloc = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
    else:
        netloc = _ascii_host(host)
        _check_host_name(netloc)
        if not (allow_insecure and is_loopback_host(netloc)) and not host_matches(netloc, allowed_hosts):
            allowed = ", ".join(allowed_hosts)
            raise InstanceUrlError(f"The host {netloc} is not a ServiceNow instance host; allowed: {allowed}.")

    if port_text:
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5 and 1 <= int(port_text) <= 65535):
            raise InstanceUrlError("The port of the Instance URL is not valid.")
        if int(port_text) != (443 if scheme == "https" else 80):
            netloc = f"{netloc}:{int(port_text)}"
    return f"{scheme}://{netloc}"
