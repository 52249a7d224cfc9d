"""Publishing proposals about a dead member: at most one attempt per member per ``sleep``.

Used by the takeover worker (``autotakeover.sleep``, stream ``{qwc}:takeover``) and the
recovery worker (``recoverExecutions.sleep``, stream ``{qwc}:recovery``). One Lua script
sets the member's attempt key (``SET NX PX sleep``) and appends the proposal to the stream
in the same atomic step, so replicas racing on the same death publish one proposal between
them.
"""

from __future__ import annotations

import logging

import redis

from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD
from schemas.messages import RecoveryProposal, TakeoverProposal

__all__ = ["PROPOSALS_MAXLEN", "publish_once_per_sleep"]

log = logging.getLogger(__name__)

PROPOSALS_MAXLEN = 100_000

# KEYS: attempt key, proposal stream. ARGV: sleep ms, proposal id, maxlen, field, payload.
_PROPOSE_LUA = """
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', ARGV[4], ARGV[5])
end
return false
"""


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
