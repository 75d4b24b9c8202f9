"""The RQ queue of export jobs: putting a run's job on it and asking Redis which jobs will still run. Job arguments
are run ids only; nothing here decides a run's status (that is `runs`)."""

from __future__ import annotations

import logging

from redis import Redis
from redis.exceptions import RedisError

QUEUE_NAME = "itam-exports"
JOB_FUNCTION = "itam_admin.exports.jobs.export_job"
JOB_FAILED_CALLBACK = "itam_admin.exports.jobs.export_job_failed"
JOB_TIMEOUT_SECONDS = 6 * 3600
# RQ statuses of a job that will still run (or is running); any other status, or no job, means the run's job is gone.
_WAITING = {"queued", "started", "deferred", "scheduled", "created", "ready_to_enqueue", "rate_limited"}
log = logging.getLogger("itam_admin.exports")


class QueueUnavailable(Exception):
    """Redis cannot be reached; the message is for the tenant admin."""

    def __init__(self) -> None:
        super().__init__(
            "The export queue (Redis) cannot be reached, so the export was not started. "
            "Try again in a few minutes; if it keeps failing, ask the portal operator to check Redis."
        )


def job_id(run_id: int, attempt: int = 1) -> str:
    """The RQ job id of a run: `itam-export-<run id>`, with `-<attempt>` when the scheduler queued it again."""
    return f"itam-export-{run_id}" if attempt == 1 else f"itam-export-{run_id}-{attempt}"


def queue(connection: Redis):
    from rq import Queue

    return Queue(QUEUE_NAME, connection=connection)


def enqueue_job(connection: Redis | None, run_id: int, attempt: int = 1) -> str:
    """Put the run's job on the queue and return its id; raise QueueUnavailable when Redis does not take it."""
    try:
        if connection is None:
            raise RuntimeError("REDIS_URL is not set")
        queue(connection).enqueue(
            JOB_FUNCTION,
            run_id,
            job_id=job_id(run_id, attempt),
            job_timeout=JOB_TIMEOUT_SECONDS,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
            on_failure=JOB_FAILED_CALLBACK,
            description=f"ServiceNow export run {run_id}",
        )
    except (RedisError, RuntimeError, OSError):
        log.warning("could not enqueue export run %s: Redis unreachable", run_id)
        raise QueueUnavailable() from None
    return job_id(run_id, attempt)


def waiting_job_ids(connection: Redis, candidates: list[str]) -> set[str]:
    """Which of these job ids Redis still holds as a job that will run: its hash has a waiting status and, when
    queued, its id is on the queue (or being handed to a worker). Raises RedisError when Redis does not answer."""
    from rq.job import Job
    from rq.utils import as_text

    the_queue = queue(connection)
    # One MULTI/EXEC: statuses and both lists from the same instant. Read one by one, a job a worker moved from the
    # queue to the intermediate list (or on to `started`, which RQ does in one transaction too) between two reads is
    # in neither snapshot, and a run about to start would look lost (seen under load in the simulated Sunday).
    with connection.pipeline(transaction=True) as pipe:
        for candidate in candidates:
            pipe.hget(Job.key_for(candidate), "status")
        pipe.lrange(the_queue.key, 0, -1)
        pipe.lrange(the_queue.intermediate_queue_key, 0, -1)
        answers = pipe.execute()
    statuses = [None if s is None else as_text(s) for s in answers[: len(candidates)]]
    on_queue = {as_text(i) for i in answers[len(candidates)]} | {as_text(i) for i in answers[len(candidates) + 1]}
    waiting = set()
    for candidate, status in zip(candidates, statuses, strict=True):
        if status not in _WAITING:
            continue
        if status == "queued" and candidate not in on_queue:
            continue
        waiting.add(candidate)
    return waiting
