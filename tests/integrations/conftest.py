"""Fixtures of the Integrations tab tests: each test starts with the Test connection rate limit unused."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fresh_test_connection_limit(redis_url):
    """Test connection allows a few tests per tenant and minute, counted in Redis: a test must not use up the next
    test's allowance."""
    import redis

    from itam_admin.integrations import connection_check

    def forget() -> None:
        connection = redis.Redis.from_url(redis_url)
        keys = list(connection.scan_iter("itam:test-connection:*"))
        if keys:
            connection.delete(*keys)
        connection.close()
        connection_check._local_hits.clear()

    forget()
    yield
    forget()
