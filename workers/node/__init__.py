"""The reference node: a cluster member built from the heartbeat producer, the store and RQ.

Modules: ``scheduler`` (pure: which fire times of which owned jobs are due at ``now_ms``),
``member`` (the scheduling loop: fires through the fence, SQL only), ``dispatcher`` (due
executions -> the member's RQ queue), ``consumer`` (the queue -> the pool, while a slot is
free), ``pool`` (the bounded slots), ``executors`` (what an execution runs for each executor
kind, and its environment), ``output`` (the bounded output), ``pycall`` (the child process
of a ``python`` executor), ``runner`` (how an execution's outcome is recorded),
``recorder`` (outcomes in batches), ``groups`` (process groups), ``watchdog`` (ends the
groups a dead, paused or cut-off node cannot), ``commands`` (remote commands), ``node``
(the threads of one member and its drain; ``qwc node`` runs it). docs/executions.md
describes the whole.
"""

from __future__ import annotations

__all__: list[str] = []
