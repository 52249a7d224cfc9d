"""A member's remote command processing: its stream ``{qwc}:commands:<uuid>``, read every
``remoteExec.process.interval`` (the node's loop calls :meth:`CommandProcessor.process`).

Each pass:

1. reads the entries delivered to this member but not acked yet (a crash before the ack),
   then the new ones, in the consumer group ``commands`` (consumer: the member's uuid);
   an entry that does not decode as a ``RemoteCommand``, or names no recorded command, goes
   to the dead-letter stream and is acked;
2. processes every ``pending`` command whose target is this member, as the store records
   them (the row is the truth, the message its delivery): so a redelivered message does
   nothing a second time, a command re-routed to another member is not processed here, and
   a command whose message was lost (recorded, then the publish failed; or re-routed here)
   is processed all the same;
3. acks the entries it read.

A command past ``expires_at_ms`` (Redis server clock) is recorded ``expired`` and nothing
else happens. ``execute``: in one transaction, the command ``done`` (only while still
pending here) and an execution of the job on this member with the command's execution id,
trigger ``remote``, due now, admitted by the job's concurrency policy like a fire
(``workers.store.admit_execution``): ``scheduled`` (with ``replace``, the job's running
executions aborted, and those in this member's pool ended at once), or ``skipped`` with
the reason when ``forbid`` finds one running; the node's dispatcher enqueues a scheduled
one at once.
``abort``: the execution is recorded ``aborted`` first (a not yet started one then never
starts), then, when it was running here, the pool ends its command's whole process group
(SIGTERM, SIGKILL after a grace; the pool writes no outcome over the abort, so there is no
retry). A command that cannot be carried out (unknown job or execution) is ``failed``
with the reason. Transient Redis/SQL errors propagate (the node's loop retries the pass;
nothing was acked).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from schemas.errors import NotFoundError, QwcError
from schemas.keys import GROUP_COMMANDS, Keys
from schemas.messages import RemoteCommand
from workers.bus.retry import Prepared, is_transient
from workers.bus.streams import (
    Entry,
    ack,
    dead_letter,
    decode_entries,
    ensure_group,
    read_group,
    read_pending,
    server_time_ms,
)
from workers.liveness.listing import iso_utc
from workers.store import (
    Admitted,
    CommandRow,
    Store,
    abort_execution,
    admit_execution,
    finish_command,
    get_command,
    get_execution,
    get_job,
    list_commands,
)

__all__ = ["BATCH", "CommandProcessor", "Processed"]

log = logging.getLogger(__name__)

BATCH = 100  # entries per XREADGROUP
MAX_BATCHES = 10  # per pass; what is left waits for the next pass


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Processed:
    """One command this member processed: its final status and what was done."""

    command_id: str
    action: str
    status: str
    detail: str


class _NotPending(QwcError):
    """The command was processed meanwhile (by another pass): undo what this one did."""


class CommandProcessor:
    """Processes the remote commands of member ``member_uuid`` (see the module docstring).

    ``clock_ms`` is the member's clock (epoch ms), used for the times of executions as
    everywhere on the member; expiry and ``processed_ms`` use the Redis server's clock,
    the one commands are issued with. ``end_execution(execution_id, reason)`` ends a
    running execution's process group in the member's pool, recording nothing; False when
    the pool does not run it (default: nothing runs here). ``on_replaced`` gets a remote
    execution that replaced running ones (policy ``replace``), once it is committed.
    """

    def __init__(
        self,
        client: redis.Redis,
        store: Store,
        keys: Keys,
        *,
        member_uuid: str,
        clock_ms: Callable[[], int] = _wall_clock_ms,
        end_execution: Callable[[str, str], bool] = lambda _id, _reason: False,
        on_replaced: Callable[[Admitted], object] = lambda _admitted: None,
    ) -> None:
        self.client = client
        self.store = store
        self.member_uuid = member_uuid
        self.stream = keys.commands(member_uuid)
        self._keys = keys
        self._clock_ms = clock_ms
        self._end_execution = end_execution
        self._on_replaced = on_replaced
        self._prepared = Prepared(self._prepare)

    def process(self) -> list[Processed]:
        """One pass: read, process what is pending here, ack. Returns what it processed.

        The consumer group is created before the first pass and again before the pass after
        a transient error (a Redis restarted empty answers ``NOGROUP``)."""
        return self._prepared.run(self._pass)

    def _prepare(self) -> None:
        ensure_group(self.client, self.stream, GROUP_COMMANDS, "0")

    def _pass(self) -> list[Processed]:
        entries = self._read()
        now_ms = server_time_ms(self.client)
        rows = list_commands(
            self.store, target_uuid=self.member_uuid, statuses=("pending",), limit=None
        )
        self._dead_letter_bad(entries, now_ms, {row.id for row in rows})
        done = [self.process_command(row, now_ms) for row in reversed(rows)]  # oldest first
        ack(self.client, self.stream, GROUP_COMMANDS, [entry_id for entry_id, _ in entries])
        return [p for p in done if p is not None]

    def _read(self) -> list[Entry]:
        me = self.member_uuid
        entries = read_pending(self.client, self.stream, GROUP_COMMANDS, me, count=BATCH)
        for _ in range(MAX_BATCHES):
            batch = read_group(
                self.client, self.stream, GROUP_COMMANDS, me, count=BATCH, block_ms=None
            )
            entries += batch
            if len(batch) < BATCH:
                break
        return entries

    def _dead_letter_bad(self, entries: list[Entry], now_ms: int, pending: set[str]) -> None:
        """Dead-letter what is not a RemoteCommand with a record in the store (``pending``:
        the ids known to be); the caller acks every entry."""
        for d in decode_entries(entries):
            reason = d.error
            if reason is None and not isinstance(d.message, RemoteCommand):
                reason = f"expected command, got {type(d.message).__name__}"
            elif (
                isinstance(d.message, RemoteCommand)
                and d.message.id not in pending
                and not self._recorded(d.message.id)
            ):
                reason = f"command {d.message.id} is not recorded in the store"
            if reason is not None:
                dead_letter(
                    self.client,
                    self._keys,
                    origin_stream=self.stream,
                    entry_id=d.entry_id,
                    raw=d.raw,
                    reason=reason,
                    now_ms=now_ms,
                )

    def _recorded(self, command_id: str) -> bool:
        try:
            row = get_command(self.store, command_id)
        except NotFoundError:
            return False
        if row.status != "pending" or row.target_uuid != self.member_uuid:
            log.debug(
                "member %s: command %s is %s on %s; message acked",
                self.member_uuid,
                command_id,
                row.status,
                row.target_uuid,
            )
        return True

    def process_command(self, row: CommandRow, now_ms: int) -> Processed | None:
        """Carry out one pending command of this member at Redis time ``now_ms``. None when
        it was not pending here any more (cancelled, re-routed, processed meanwhile)."""
        if row.expires_ms <= now_ms:
            return self._finish(row, "expired", now_ms, f"expired at {iso_utc(row.expires_ms)}")
        try:
            if row.action == "execute":
                return self._execute(row, now_ms)
            return self._abort(row, now_ms)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception("member %s: command %s failed", self.member_uuid, row.id)
            return self._finish(row, "failed", now_ms, f"{type(exc).__name__}: {exc}")

    def _finish(self, row: CommandRow, status: str, now_ms: int, detail: str) -> Processed | None:
        changed = finish_command(
            self.store,
            row.id,
            status=status,
            now_ms=now_ms,
            by=self.member_uuid,
            detail=detail,
            target_uuid=self.member_uuid,
        )
        return Processed(row.id, row.action, status, detail) if changed else None

    def _execute(self, row: CommandRow, now_ms: int) -> Processed | None:
        if row.job_id is None or row.execution_id is None:
            return self._finish(row, "failed", now_ms, "execute command without job/execution")
        try:
            job = get_job(self.store, row.job_id)
        except NotFoundError:
            return self._finish(row, "failed", now_ms, f"job {row.job_id} does not exist")
        try:
            with self.store.begin() as conn:
                local_ms = self._clock_ms()
                admitted = admit_execution(
                    conn,
                    job_id=job.id,
                    member_uuid=self.member_uuid,
                    trigger="remote",
                    fire_ms=local_ms,
                    now_ms=local_ms,
                    execution_id=row.execution_id,
                )
                detail = f"execution {row.execution_id} of job {job.id} {admitted.status} on "
                detail += self.member_uuid + (f": {admitted.reason}" if admitted.reason else "")
                if not finish_command(
                    conn,
                    row.id,
                    status="done",
                    now_ms=now_ms,
                    by=self.member_uuid,
                    detail=detail,
                    target_uuid=self.member_uuid,
                ):
                    raise _NotPending  # rolls the execution back
        except _NotPending:
            return None
        if admitted.aborted:
            self._on_replaced(admitted)
        return Processed(row.id, row.action, "done", detail)

    def _abort(self, row: CommandRow, now_ms: int) -> Processed | None:
        execution_id = row.execution_id
        if execution_id is None:
            return self._finish(row, "failed", now_ms, "abort command without an execution")
        try:
            before = abort_execution(
                self.store,
                execution_id,
                now_ms=self._clock_ms(),
                reason=f"aborted by command {row.id} of {row.issued_by}",
            )
        except NotFoundError:
            return self._finish(row, "failed", now_ms, f"execution {execution_id} does not exist")
        if before is None:
            status = get_execution(self.store, execution_id).status
            return self._finish(row, "done", now_ms, f"nothing to abort: already {status}")
        if before.status == "scheduled":
            return self._finish(row, "done", now_ms, "aborted before it started")
        ended = self._end_execution(execution_id, f"aborted by command {row.id}")
        detail = (
            "aborted; its process group was ended"
            if ended
            else "aborted; its command was not running in this member's pool"
        )
        log.info("member %s: execution %s %s", self.member_uuid, execution_id, detail)
        return self._finish(row, "done", now_ms, detail)
