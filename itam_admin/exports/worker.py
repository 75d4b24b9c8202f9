"""The `flask itam worker` process: an RQ worker on the export queue that outlives Redis outages (it waits with
backoff, logs the outage once and carries on when Redis answers again), with the scheduler thread beside it.

RQ alone quits when Redis goes away at the wrong moment (a heartbeat, its own death notice) and logs every retry;
this module never lets a Redis fault end the process and never logs Redis's URL (it may hold a password).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Worker

from itam_admin.exports import job_queue, outage

log = logging.getLogger("itam_admin.exports")
REDIS_FAULTS = (RedisConnectionError, RedisTimeoutError)
RETRY_AT_MOST_SECONDS = 30.0


class ExportWorker(Worker):
    """RQ's forking worker, except that Redis faults in its bookkeeping are reported to the outage log instead of
    ending the process; a running export goes on (it needs only the database and ServiceNow)."""

    max_connection_wait_time = RETRY_AT_MOST_SECONDS  # RQ's own reconnect backoff while it waits for jobs
    stopping = False

    def request_stop(self, signum, frame):
        self.stopping = True
        super().request_stop(signum, frame)

    def heartbeat(self, timeout=None, pipeline=None):
        try:
            super().heartbeat(timeout, pipeline)
        except REDIS_FAULTS as error:
            outage.REDIS.failed(error)
            return
        if pipeline is None and outage.REDIS.recovered():
            self._register_again()

    def maintain_heartbeats(self, job, execution):
        try:
            super().maintain_heartbeats(job, execution)
        except REDIS_FAULTS as error:
            outage.REDIS.failed(error)

    def register_death(self):
        try:
            super().register_death()
        except REDIS_FAULTS:
            pass  # Redis forgets a worker whose key is not renewed

    def unsubscribe(self):
        try:
            super().unsubscribe()
        except REDIS_FAULTS:
            # Without this the pubsub thread would keep reconnecting for a worker that is gone.
            if self.pubsub_thread:
                self.pubsub_thread.stop()
                self.pubsub_thread.join(timeout=1)

    def _register_again(self) -> None:
        """A Redis that restarted empty forgot this worker: list it again (for `rq info` and dashboards)."""
        from rq import worker_registration

        try:
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, mapping=self.serialize())
                pipe.expire(self.key, self.worker_ttl + 60)
                worker_registration.register(self, pipe)
                pipe.execute()
        except REDIS_FAULTS as error:
            outage.REDIS.failed(error)


class _RedisRetryFilter(logging.Filter):
    """RQ logs each failed reconnect (and a traceback when its loop gives up on a Redis fault): the first goes to
    the outage log, which says it once; the rest are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, REDIS_FAULTS):
            outage.REDIS.failed(error)
            return False
        if "could not connect to Redis" in str(record.msg) or "Redis connection timeout" in str(record.msg):
            args = record.args if isinstance(record.args, tuple) else ()
            outage.REDIS.failed(next((a for a in args if isinstance(a, BaseException)), "connection lost"))
            return False
        return True


_FILTER = _RedisRetryFilter()


def _answers(connection: Redis) -> bool:
    try:
        connection.ping()
    except REDIS_FAULTS as error:
        outage.REDIS.failed(error)
        return False
    outage.REDIS.recovered()
    return True


def _wait_for_horse(pid: int, stop: threading.Event) -> None:
    """A work horse left running when RQ's loop gave up: let it finish its export before taking new jobs."""
    while not stop.is_set():
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        stop.wait(1.0)


def run_worker(connection: Redis, burst: bool, announce: Callable[[str], None]) -> None:
    """Work the export queue until stopped (SIGTERM, Ctrl-C) or, with `burst`, until it is empty. A Redis outage
    never ends it: the worker waits, retrying with backoff (at most RETRY_AT_MOST_SECONDS apart), then goes on."""
    logging.getLogger("rq.worker").addFilter(_FILTER)
    stop = threading.Event()
    pause, announced = 1.0, False
    while not stop.is_set():
        outages = outage.REDIS.count
        worker = ExportWorker([job_queue.queue(connection)], connection=connection)
        if not announced:
            announce(worker.name)
            announced = True
        try:
            worker.work(burst=burst, with_scheduler=False, logging_level="INFO")
        except REDIS_FAULTS as error:
            outage.REDIS.failed(error)
        # Between two RQ loops a signal must only ask us to stop (RQ's handlers belong to the worker that ended).
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if worker.stopping:
            return
        if worker.horse_pid:
            _wait_for_horse(worker.horse_pid, stop)
        if outage.REDIS.count == outages and not outage.REDIS.down:
            if burst:
                return  # the queue is empty (or RQ gave up on a job's fault, which it logged)
            log.warning("the RQ worker loop ended unexpectedly; starting it again in %.0f s", pause)
            stop.wait(pause)
            pause = min(pause * 2, RETRY_AT_MOST_SECONDS)
            continue
        wait = 1.0
        while not stop.wait(wait) and not _answers(connection):
            wait = min(wait * 2, RETRY_AT_MOST_SECONDS)
