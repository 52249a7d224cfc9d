"""The reference node: a cluster member built from the heartbeat producer, the store and RQ.

Modules: ``scheduler`` (pure: which fire times of which owned jobs are due at ``now_ms``),
``runner`` (the RQ task that runs one execution's command), ``rq_worker`` (the RQ worker
child process of a node), ``member`` (the loop wiring them together; ``qwc node`` runs it),
``executors`` (what an execution runs for each executor kind, its environment, and the
bounded output collector), ``pycall`` (the child process of a ``python`` executor).
"""

from __future__ import annotations

__all__: list[str] = []
