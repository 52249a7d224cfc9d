"""Pausing Python's cyclic garbage collector while a batch of messages is handled.

Decoding a batch makes thousands of short-lived objects without reference cycles. When the
collector runs in the middle of a batch, it finds them all alive, moves them to older
generations and, every few batches, walks every object of the process in a full
collection: in the liveness worker that cost more than decoding the heartbeats. Reference
counting frees the batch's objects all the same; after the batch the collector runs as
usual, and finds them gone.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


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
