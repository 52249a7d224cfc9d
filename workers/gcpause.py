"""Pausing Python's cyclic garbage collector while a batch of messages is handled, and
keeping it off what a long-running process made to start.

Decoding a batch makes thousands of short-lived objects without reference cycles. When the
collector runs in the middle of a batch, it finds them all alive, moves them to older
generations and, every few batches, walks every object of the process in a full
collection: in the liveness worker that cost more than decoding the heartbeats. Reference
counting frees the batch's objects all the same; after the batch the collector runs as
usual, and finds them gone.

:func:`freeze_startup`: a node's modules, tables, settings and clients are some hundred
thousand objects that live as long as it does; a full collection walked them all (about
45 ms on a 2-core machine, every few tens of seconds under load), every thread of the node
stopped meanwhile. Frozen once started, they are never walked again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["freeze_startup", "gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (reference counting goes on).

    Safe with threads: the collector is enabled again by whoever paused it, so it ends
    enabled if it was enabled before any block began."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def freeze_startup() -> int:
    """Collect once, then move every object the process holds to the collector's permanent
    generation (``gc.freeze``): later collections walk only what was made after. Call it
    once, when the process has started; returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
