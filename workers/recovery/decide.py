"""Pure recovery decisions: whether an execution gets another attempt, and when.

Nothing here reads a clock, Redis or SQL: times come in as ``now_ms`` (epoch ms).
"""

from __future__ import annotations

from workers.store import NewExecution

__all__ = ["next_retry"]


def next_retry(
    *,
    execution_id: str,
    retry_of: str | None,
    job_id: str,
    attempt: int,
    retry_count: int,
    retry_delay_s: float,
    to_uuid: str,
    now_ms: int,
    new_id: str,
) -> NewExecution | None:
    """The retry of an execution that failed or was interrupted, or None when its job has
    no retries left: attempt ``n`` of a job with ``retry_count`` retries is followed by
    attempt ``n + 1`` while ``n <= retry_count``. The retry runs on ``to_uuid``, not before
    ``now_ms`` + the job's retry delay, linked to the first execution of the chain."""
    if attempt > retry_count:
        return None
    return NewExecution(
        id=new_id,
        job_id=job_id,
        member_uuid=to_uuid,
        fire_ms=now_ms + round(retry_delay_s * 1000),
        attempt=attempt + 1,
        retry_of=retry_of or execution_id,
    )
