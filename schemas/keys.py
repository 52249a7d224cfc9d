"""Every Redis key and stream name of one cluster, in one place.

All keys of a cluster share one Redis Cluster hash slot through the hash tag ``{prefix}``
(default prefix ``qwc``), so the project runs unchanged on Redis Cluster::

    {qwc}:heartbeats            stream   Heartbeat messages, field "m" (msgpack); group "liveness"
    {qwc}:membership            stream   MembershipChange messages, one per state change
    {qwc}:takeover              stream   TakeoverProposal messages; group "takeover"
    {qwc}:recovery              stream   RecoveryProposal messages; group "recovery"
    {qwc}:commands:<uuid>       stream   RemoteCommand messages for one member; group "commands"
    {qwc}:dead-letters          stream   undecodable messages: reason, raw bytes, origin
    {qwc}:view:seen             zset     member uuid -> last heartbeat, Redis server ms
    {qwc}:view:watch            zset     same scores, only members not yet dead (sweep index)
    {qwc}:view:state            hash     member uuid -> "active" | "inactive" | "dead"
    {qwc}:view:info             hash     member uuid -> msgpack of a Heartbeat of its latest
                                         content (all but seq, sent_at_ms: written on change)
    {qwc}:view:info:content     hash     member uuid -> digest of that content (16 bytes)
    {qwc}:view:info:writes      string   INCRBY: how many times a stored content changed
    {qwc}:view:started          string   Redis server ms when this view began (grace rule)
    {qwc}:view:server           string   run_id of the Redis server the view was last read on
    {qwc}:view:restarts         stream   ViewRestart messages: the view restarted on a new server
    {qwc}:view:incarnations     hash     member uuid -> msgpack {started_at_ms: [seq, entry id
                                         ms, entry id seq]}: signed heartbeats (replay check)
    {qwc}:takeover:attempt:<uuid>   string   SET NX PX sleep: one takeover attempt per sleep
    {qwc}:recovery:attempt:<uuid>   string   SET NX PX sleep: one recovery attempt per sleep
    {qwc}:takeover:held         hash     proposal id -> why the mass-failure guard holds it
    {qwc}:takeover:released     string   server ms of the last `qwc takeover release`
    {qwc}:remote-exec:round-robin   string   INCR: whose turn it is (RoundRobin remote execution)
    {qwc}:retention:pass        string   SET NX PX: one execution-retention pass per period
    {qwc}:events                stream   Event messages (docs/notifications.md);
                                         group "notify:<receiver>" per webhook receiver
    {qwc}:events:once:<event id>    string   SET NX PX: an event id is appended once
    {qwc}:notifications:failed  stream   FailedNotification messages: deliveries given up
    {qwc}:notify:lease:<receiver>   string   SET NX PX: the replica delivering to a receiver
    {qwc}:notify:retry:<receiver>   hash     failed attempts at the receiver's oldest event
    {qwc}:notify:counts         hash     "<receiver>:<outcome>" -> deliveries (metrics;
                                         "job-hooks:<outcome>" for the jobs' webhooks)
    {qwc}:notify:hooks:due      zset     delivery id -> next attempt ms (jobs' webhooks);
                                         group "notify:job-hooks" on {qwc}:events fans out
    {qwc}:notify:hook:<delivery id>  hash  event, url, failed attempts of one delivery

Stream entries carry one field, ``m``, holding the msgpack-encoded message; a heartbeat
signed with ``qwcontrol.clusterMode.heartbeat.secret`` also carries ``s``, the hex
HMAC-SHA256 of ``m`` (:mod:`schemas.signing`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "GROUP_COMMANDS",
    "GROUP_LIVENESS",
    "GROUP_RECOVERY",
    "GROUP_TAKEOVER",
    "MESSAGE_FIELD",
    "SIGNATURE_FIELD",
    "Keys",
    "notify_group",
]

MESSAGE_FIELD = b"m"
SIGNATURE_FIELD = b"s"  # beside MESSAGE_FIELD: hex HMAC-SHA256 of it (signed heartbeats)
GROUP_LIVENESS = "liveness"
GROUP_TAKEOVER = "takeover"
GROUP_RECOVERY = "recovery"
GROUP_COMMANDS = "commands"  # on each member's own command stream; the member is its consumer


def notify_group(receiver: str) -> str:
    """The consumer group of one webhook receiver on the events stream: ``notify:<name>``."""
    return f"notify:{receiver}"


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix. ``Keys("qwc").heartbeats == "{qwc}:heartbeats"``."""

    prefix: str = "qwc"

    def _k(self, name: str) -> str:
        return f"{{{self.prefix}}}:{name}"

    @property
    def heartbeats(self) -> str:
        return self._k("heartbeats")

    @property
    def membership(self) -> str:
        return self._k("membership")

    @property
    def takeover(self) -> str:
        return self._k("takeover")

    @property
    def recovery(self) -> str:
        return self._k("recovery")

    @property
    def dead_letters(self) -> str:
        return self._k("dead-letters")

    @property
    def view_seen(self) -> str:
        return self._k("view:seen")

    @property
    def view_watch(self) -> str:
        return self._k("view:watch")

    @property
    def view_state(self) -> str:
        return self._k("view:state")

    @property
    def view_info(self) -> str:
        return self._k("view:info")

    @property
    def view_info_content(self) -> str:
        return self._k("view:info:content")

    @property
    def view_info_writes(self) -> str:
        return self._k("view:info:writes")

    @property
    def view_started(self) -> str:
        return self._k("view:started")

    @property
    def view_server(self) -> str:
        return self._k("view:server")

    @property
    def view_restarts(self) -> str:
        return self._k("view:restarts")

    @property
    def view_incarnations(self) -> str:
        return self._k("view:incarnations")

    def commands(self, member_uuid: str) -> str:
        return self._k(f"commands:{member_uuid}")

    def takeover_attempt(self, member_uuid: str) -> str:
        return self._k(f"takeover:attempt:{member_uuid}")

    def recovery_attempt(self, member_uuid: str) -> str:
        return self._k(f"recovery:attempt:{member_uuid}")

    @property
    def takeover_held(self) -> str:
        return self._k("takeover:held")

    @property
    def takeover_released(self) -> str:
        return self._k("takeover:released")

    @property
    def remote_exec_round_robin(self) -> str:
        return self._k("remote-exec:round-robin")

    @property
    def retention_pass(self) -> str:
        return self._k("retention:pass")

    @property
    def events(self) -> str:
        return self._k("events")

    def event_once(self, event_id: str) -> str:
        return self._k(f"events:once:{event_id}")

    @property
    def notifications_failed(self) -> str:
        return self._k("notifications:failed")

    def notify_lease(self, receiver: str) -> str:
        return self._k(f"notify:lease:{receiver}")

    def notify_retry(self, receiver: str) -> str:
        return self._k(f"notify:retry:{receiver}")

    def notify_hook(self, delivery: str) -> str:
        return self._k(f"notify:hook:{delivery}")

    @property
    def notify_hooks_due(self) -> str:
        return self._k("notify:hooks:due")

    @property
    def notify_counts(self) -> str:
        return self._k("notify:counts")

    def all_streams(self) -> tuple[str, ...]:
        """The fixed streams (not the per-member command streams)."""
        return (
            self.heartbeats,
            self.membership,
            self.takeover,
            self.recovery,
            self.dead_letters,
            self.events,
            self.notifications_failed,
        )
