"""Publishing takeover proposals: at most one attempt per dead member per ``autotakeover.sleep``.

One Lua script sets the member's attempt key (``SET NX PX sleep``) and appends the proposal
to the takeover stream in the same atomic step, so replicas racing on the same death
publish one proposal between them.
"""

from __future__ import annotations

import logging
import uuid as uuidlib

import redis

from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import TakeoverProposal

__all__ = ["PROPOSALS_MAXLEN", "new_proposal", "publish_once_per_sleep"]

log = logging.getLogger(__name__)

PROPOSALS_MAXLEN = 100_000

# KEYS: attempt key, takeover stream. ARGV: sleep ms, proposal id, maxlen, field, payload.
_PROPOSE_LUA = """
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', ARGV[4], ARGV[5])
end
return false
"""


def new_proposal(
    *, dead_uuid: str, policy: str, proposed_at_ms: int, delay_ms: int, last_seen_ms: int
) -> TakeoverProposal:
    """A proposal due ``delay_ms`` after ``proposed_at_ms`` (Redis server ms)."""
    return TakeoverProposal(
        id=uuidlib.uuid4().hex,
        dead_uuid=dead_uuid,
        policy=policy,
        proposed_at_ms=proposed_at_ms,
        due_at_ms=proposed_at_ms + delay_ms,
        last_seen_ms=last_seen_ms,
    )


def publish_once_per_sleep(
    r: redis.Redis, keys: Keys, proposal: TakeoverProposal, *, sleep_ms: int
) -> bool:
    """Publish ``proposal`` unless this member had an attempt in the last ``sleep_ms``.

    Returns True when it was published.
    """
    script = r.register_script(_PROPOSE_LUA)
    entry = script(
        keys=[keys.takeover_attempt(proposal.dead_uuid), keys.takeover],
        args=[sleep_ms, proposal.id, PROPOSALS_MAXLEN, MESSAGE_FIELD, encode(proposal)],
    )
    if entry is None:
        log.debug("member %s: takeover attempt within sleep; not proposed", proposal.dead_uuid)
        return False
    log.info(
        "member %s: takeover proposal %s due at %s ms",
        proposal.dead_uuid,
        proposal.id,
        proposal.due_at_ms,
    )
    return True
