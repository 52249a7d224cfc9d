"""The reference node: a cluster member built from the heartbeat producer, the store and RQ.

Modules: ``scheduler`` (pure: which fire times of which owned jobs are due at ``now_ms``),
``member`` (the scheduling loop: fires through the fence, SQL only), ``dispatcher`` (due
executions -> the member's RQ queue), ``consumer`` (the queue -> the pool, while a slot is
free), ``pool`` (the bounded slots), ``runner`` (what an execution runs, and how its
outcome is recorded), ``recorder`` (outcomes in batches), ``groups`` (process groups),
``watchdog`` (ends the groups a dead, paused or cut-off node cannot), ``commands`` (remote
commands), ``node`` (the threads of one member and its drain; ``qwc node`` runs it).
docs/executions.md describes the whole.
"""

from __future__ import annotations

__all__: list[str] = []
