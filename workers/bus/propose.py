"""Publishing proposals about a dead member: at most one attempt per member per ``sleep``.

Used by the takeover worker (``autotakeover.sleep``, stream ``{qwc}:takeover``) and the
recovery worker (``recoverExecutions.sleep``, stream ``{qwc}:recovery``). One Lua script
sets the member's attempt key (``SET NX PX sleep``) and appends the proposal to the stream
in the same atomic step, so replicas racing on the same death publish one proposal between
them.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from typing import TypeVar

import redis

from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD
from schemas.messages import RecoveryProposal, TakeoverProposal

__all__ = ["PROPOSALS_MAXLEN", "Proposal", "new_proposal", "publish_once_per_sleep"]

log = logging.getLogger(__name__)

PROPOSALS_MAXLEN = 100_000

Proposal = TypeVar("Proposal", TakeoverProposal, RecoveryProposal)

# KEYS: attempt key, proposal stream. ARGV: sleep ms, proposal id, maxlen, field, payload.
_PROPOSE_LUA = """
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', ARGV[4], ARGV[5])
end
return false
"""


def new_proposal(
    kind: type[Proposal],
    *,
    dead_uuid: str,
    policy: str,
    proposed_at_ms: int,
    delay_ms: int,
    last_seen_ms: int,
    proposal_id: str | None = None,
) -> Proposal:
    """A proposal of type ``kind`` due ``delay_ms`` after ``proposed_at_ms`` (Redis server ms).

    Its id is ``proposal_id``, else a random one (the replay passes ids derived from the
    member and the time, so that its seeded choices are reproducible)."""
    return kind(
        id=proposal_id or uuidlib.uuid4().hex,
        dead_uuid=dead_uuid,
        policy=policy,
        proposed_at_ms=proposed_at_ms,
        due_at_ms=proposed_at_ms + delay_ms,
        last_seen_ms=last_seen_ms,
    )


def publish_once_per_sleep(
    r: redis.Redis,
    proposal: TakeoverProposal | RecoveryProposal,
    *,
    attempt_key: str,
    stream: str,
    sleep_ms: int,
) -> bool:
    """Append ``proposal`` to ``stream`` unless ``attempt_key`` exists (an attempt for this
    member in the last ``sleep_ms``); set that key for ``sleep_ms`` when publishing.

    Returns True when it was published.
    """
    script = r.register_script(_PROPOSE_LUA)
    entry = script(
        keys=[attempt_key, stream],
        args=[sleep_ms, proposal.id, PROPOSALS_MAXLEN, MESSAGE_FIELD, encode(proposal)],
    )
    what = proposal.TYPE
    if entry is None:
        log.debug("member %s: %s attempt within sleep; not proposed", proposal.dead_uuid, what)
        return False
    log.info(
        "member %s: %s proposal %s due at %s ms",
        proposal.dead_uuid,
        what,
        proposal.id,
        proposal.due_at_ms,
    )
    return True
