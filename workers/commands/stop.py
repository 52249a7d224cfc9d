"""Stop a running execution's RQ job: RQ's stop-job command, sent over Redis pub/sub.

The RQ worker running the job kills its work horse's process group (the job's command with
it) and records the RQ job ``stopped``; the task writes no outcome, so no retry is created.
The caller records ``aborted`` in the store first: the stop itself leaves no trace there.
"""

from __future__ import annotations

import logging

import redis
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

__all__ = ["stop_rq_job"]

log = logging.getLogger(__name__)


def stop_rq_job(client: redis.Redis, rq_job_id: str) -> bool:
    """Ask the RQ worker running ``rq_job_id`` to stop it. True when the command was sent
    to that worker; False when RQ has no such job (expired) or it is not executing (not
    started, or finished). Whichever member's worker runs it, it hears the command: the
    channel is on the shared Redis. Redis errors propagate."""
    try:
        status = Job.fetch(rq_job_id, connection=client).get_status()
        if status != JobStatus.STARTED:
            raise InvalidJobOperation(f"job is {status}, not started")
        send_stop_job_command(client, rq_job_id)
    except (NoSuchJobError, InvalidJobOperation) as exc:
        log.info("rq job %s: not stopped: %s", rq_job_id, exc)
        return False
    log.info("rq job %s: stop-job command sent", rq_job_id)
    return True
