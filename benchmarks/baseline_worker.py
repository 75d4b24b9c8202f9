"""The bare client the exporter is measured against, in a process of its own: it posts the pre-built batches (one
``{"records":[...]}`` body a line, written by ``benchmarks.dataset prepare`` from the same mapped records) to the
same staging table, with one keep-alive ``requests.Session`` per request in flight. No database, no retries, no
bookkeeping: the cost of HTTP alone.

    python -m benchmarks.baseline_worker --batches D/batches.jsonl --sandbox-url URL

Prints one ``BENCH-RESULT {json}`` line: wall seconds, CPU seconds, peak RSS, records and batches accepted.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import requests

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    CLIENT_ID,
    CLIENT_SECRET,
    STAGING_TABLE,
    Meter,
    current_rss_mb,
    emit,
    peak_rss_mb,
    refresh_token,
)


def access_token(sandbox_url: str) -> str:
    """An access token for admin through the default client (a refresh token from the sandbox, then the grant)."""
    answer = requests.post(
        f"{sandbox_url}/oauth_token.do",
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": refresh_token(sandbox_url),
        },
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def post_all(batches: Path, sandbox_url: str, token: str, in_flight: int = 4) -> dict[str, object]:
    url = f"{sandbox_url}/api/now/import/{STAGING_TABLE}/insertMultiple"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "Content-Type": "application/json"}
    lock = threading.Lock()
    totals = {"records": 0, "batches": 0, "failed_batches": 0}
    errors: list[str] = []

    with batches.open("rb") as lines:

        def next_body() -> bytes | None:
            with lock:
                line = lines.readline()
            return line.rstrip(b"\n") or None

        def sender() -> None:
            with requests.Session() as session:
                while (body := next_body()) is not None:
                    answer = session.post(url, data=body, headers=headers, timeout=120)
                    records = body.count(b'"u_source_id"')
                    with lock:
                        if 200 <= answer.status_code < 300:
                            totals["records"] += records
                            totals["batches"] += 1
                        else:
                            totals["failed_batches"] += 1
                            errors.append(f"HTTP {answer.status_code}: {answer.text[:200]}")

        rss_before = current_rss_mb()
        meter = Meter().start()
        threads = [threading.Thread(target=sender, name=f"bare-{n}") for n in range(in_flight)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        meter.stop()
    return {
        "wall_seconds": meter.wall,
        "cpu_seconds": meter.cpu,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "sent": totals["records"],
        "batches": totals["batches"],
        "failed_batches": totals["failed_batches"],
        "errors": errors[:5],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline_worker")
    parser.add_argument("--batches", required=True, type=Path)
    parser.add_argument("--sandbox-url", required=True)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args(argv)
    token = access_token(args.sandbox_url)
    emit(post_all(args.batches, args.sandbox_url, token, args.in_flight))
    return 0


if __name__ == "__main__":
    sys.exit(main())
