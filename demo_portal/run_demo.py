"""The one-command demo: embedded Redis (unless REDIS_URL is set), migrations, demo data, then the ServiceNow
sandbox, an RQ worker with the scheduler and the portal. Ctrl-C (or SIGTERM) stops everything it started."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from demo_portal.embedded_redis import start_redis_server

ROOT = Path(__file__).resolve().parents[1]


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _can_listen(port: int) -> bool:
    """Nothing listens on the port and we may bind it (the way the portal, sandbox and Redis will)."""
    if not _free(port):
        return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _next_free(port: int, taken: set[int]) -> int:
    candidate = port + 1
    while candidate < 65535 and (candidate in taken or not _can_listen(candidate)):
        candidate += 1
    return candidate


def taken_ports_message(wanted: list[tuple[str, str, int]]) -> str | None:
    """For each (what, flag, port) whose port another program holds, a line saying which flag picks another one;
    None when every port is free. Checked before anything starts, so the banner never promises a port we lack."""
    lines, ports = [], {port for _what, _flag, port in wanted}
    for what, flag, port in wanted:
        if not _can_listen(port):
            lines.append(
                f"Port {port} ({what}) is already in use by another program: stop it, or start the demo on another "
                f"port with {flag} {_next_free(port, ports)}."
            )
    if not lines:
        return None
    return "\n".join(lines + ["Nothing was started."])


def _wait_for_port(port: int, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _free(port):
            return True
        time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 5000)), help="portal port (5000)")
    parser.add_argument("--sandbox-port", type=int, default=8765, help="ServiceNow sandbox port (8765)")
    parser.add_argument("--redis-port", type=int, default=6389, help="embedded Redis port (6389)")
    parser.add_argument("--scale", choices=["demo", "small"], default="demo")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    wanted = [("the portal", "--port", args.port), ("the ServiceNow sandbox", "--sandbox-port", args.sandbox_port)]
    if not env.get("REDIS_URL"):
        wanted.append(("the embedded Redis", "--redis-port", args.redis_port))
    taken = taken_ports_message(wanted)
    if taken:
        print(taken, file=sys.stderr)
        return 1
    env.setdefault("ITAM_DEMO", "1")
    env.setdefault("ITAM_INSTANCE_PATH", str(ROOT / "instance"))
    env.setdefault("FLASK_APP", "wsgi")
    env.setdefault("ITAM_APP", "wsgi:app")  # the host app a plain `rq worker` would load (the plugin names none)
    Path(env["ITAM_INSTANCE_PATH"]).mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen] = []

    def start(name: str, command: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)
        children.append(process)
        print(f"started {name} (pid {process.pid})", flush=True)
        return process

    def stop_all(*_args) -> None:
        for process in reversed(children):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for process in children:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        children.clear()

    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(0)))
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    # Redis keeps nothing on disk (--save "", no AOF) but needs a working folder: removed when the demo stops.
    redis_dir = tempfile.TemporaryDirectory(prefix="itam-redis-")
    try:
        if not env.get("REDIS_URL"):
            redis = start_redis_server(args.redis_port, redis_dir.name, new_session=True)
            children.append(redis)
            print(f"started redis (pid {redis.pid})", flush=True)
            env["REDIS_URL"] = f"redis://127.0.0.1:{args.redis_port}/0"
        subprocess.run([*flask, "db", "upgrade"], env=env, cwd=ROOT, check=True)
        subprocess.run([*flask, "itam", "seed-demo", "--scale", args.scale], env=env, cwd=ROOT, check=True)
        start("ServiceNow sandbox", [*flask, "itam", "sandbox", "--port", str(args.sandbox_port)])
        start("worker", [*flask, "itam", "worker"])
        start("portal", [*flask, "run", "--host", "127.0.0.1", "--port", str(args.port), "--no-reload"])
        started = _wait_for_port(args.port) and _wait_for_port(args.sandbox_port)
        time.sleep(0.5)  # a server that lost the port to another program a moment ago exits now, not after the banner
        if not started or any(process.poll() is not None for process in children):
            print("the portal or the sandbox did not start; see the messages above", file=sys.stderr)
            return 1
        print(
            f"""
ITAM ServiceNow Connector demo is running.
  Portal:             http://127.0.0.1:{args.port}/login
                      admin@acme.example / demo (tenant admin), viewer@acme.example / demo, admin@globex.example / demo
  ServiceNow sandbox: http://127.0.0.1:{args.sandbox_port}/   (admin / admin, itil / itil)
                      Generate OAuth Token: http://127.0.0.1:{args.sandbox_port}/oauth_token_generator.do
                      In the portal use Instance URL http://127.0.0.1:{args.sandbox_port} and Username admin.
  Redis:              {env["REDIS_URL"]}
Press Ctrl-C to stop everything.""",
            flush=True,
        )
        while all(process.poll() is None for process in children):
            time.sleep(0.5)
        print("a demo process stopped; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except subprocess.CalledProcessError as error:
        print(f"setup step failed: {' '.join(error.cmd[3:])}", file=sys.stderr)
        return 1
    finally:
        stop_all()
        redis_dir.cleanup()


if __name__ == "__main__":
    sys.exit(main())
