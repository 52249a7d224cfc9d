"""The collector's pause around a batch, and the freeze of what a process made to start:
in-process, on this interpreter's real collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from workers.gcpause import freeze_startup, gc_paused


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the objects of this test process go back to the collector


def test_what_exists_at_the_freeze_is_never_walked_again_what_comes_after_is(
    unfrozen: None,
) -> None:
    before = [[i] for i in range(1000)]  # tracked containers, alive through the freeze
    frozen = freeze_startup()
    after = [[i] for i in range(1000)]
    tracked = {id(o) for o in gc.get_objects()}
    assert frozen == gc.get_freeze_count() >= len(before)
    assert not any(id(o) in tracked for o in before)
    assert all(id(o) in tracked for o in after)


def test_a_paused_collector_is_enabled_again_after_the_block() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
