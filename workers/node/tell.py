"""What a member tells of its executions: ``execution.*`` events (docs/notifications.md).

:func:`started_event` when the start fence moved an execution to ``running``,
:func:`ended_event` when the recorder wrote its outcome (pure; each carries the job's
webhooks for that event, ``workers.jobs.hooks``). :class:`Teller` hands them to an
:class:`workers.notify.sender.EventSender`: an execution never waits on Redis, and Redis
down loses events (logged), never an execution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.messages import Event
from workers.jobs.hooks import hook_urls
from workers.node.runner import Ended, Recorded
from workers.notify.events import execution_event, execution_kind
from workers.notify.sender import EventSender
from workers.store import StartedExecution

__all__ = ["Teller", "ended_event", "started_event"]


@dataclass(frozen=True)
class _Facts:
    """An execution as its event tells it (``workers.notify.events.ExecutionFacts``)."""

    id: str
    job_id: str
    member_uuid: str
    status: str
    attempt: int
    retry_of: str | None
    trigger: str
    fire_ms: int
    started_ms: int | None
    ended_ms: int | None
    exit_code: int | None
    output: str | None
    reason: str | None


def _event(
    e: StartedExecution,
    facts: _Facts,
    *,
    member_name: str,
    retrying: bool,
    at_ms: int,
) -> Event | None:
    kind = execution_kind(facts.status, retrying=retrying)
    if kind is None:
        return None
    return execution_event(
        facts,
        job=(e.project, e.group_name, e.name),
        member_name=member_name,
        retrying=retrying,
        at_ms=at_ms,
        hook_urls=hook_urls(e.notify, kind),
    )


def started_event(e: StartedExecution, *, member_name: str) -> Event | None:
    """``execution.started`` of ``e`` (at its start)."""
    facts = _Facts(
        e.id, e.job_id, e.member_uuid, "running", e.attempt, e.retry_of, e.trigger,
        e.fire_ms, e.started_ms, None, None, None, None,
    )  # fmt: skip
    return _event(e, facts, member_name=member_name, retrying=False, at_ms=e.started_ms)


def ended_event(ended: Ended, *, member_name: str, retrying: bool, ended_ms: int) -> Event | None:
    """The event of ``ended`` once written at ``ended_ms`` (None: a status not told)."""
    e = ended.execution
    if ended.status is None:
        return None
    facts = _Facts(
        e.id, e.job_id, e.member_uuid, ended.status, e.attempt, e.retry_of, e.trigger,
        e.fire_ms, e.started_ms, ended_ms, ended.exit_code, ended.output, ended.reason,
    )  # fmt: skip
    return _event(e, facts, member_name=member_name, retrying=retrying, at_ms=ended_ms)


class Teller:
    """Tells the events of one member's executions through ``sender``."""

    def __init__(self, sender: EventSender, *, member_name: str) -> None:
        self.sender = sender
        self.member_name = member_name

    def started(self, executions: Sequence[StartedExecution]) -> None:
        """Tell ``executions`` started; their events are built in the sender's thread, off
        the path from the start fence to the pool."""
        name, batch = self.member_name, list(executions)

        def build() -> list[Event]:
            events = (started_event(e, member_name=name) for e in batch)
            return [e for e in events if e is not None]

        self.sender.send_later(build, len(batch))

    def recorded(self, recorded: Sequence[Recorded], written_ms: int) -> None:
        """Tell the outcomes ``recorded`` (written at ``written_ms``; each ended at its
        ``at_ms``), built likewise."""
        name, batch = self.member_name, list(recorded)

        def build() -> list[Event]:
            events = (
                ended_event(
                    one.ended,
                    member_name=name,
                    retrying=one.retrying,
                    ended_ms=one.ended.at_ms(written_ms),
                )
                for one in batch
            )
            return [e for e in events if e is not None]

        self.sender.send_later(build, len(batch))
