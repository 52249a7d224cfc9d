"""Record and replay: incidents replayed through the workers' decisions on a virtual clock.

``qwc record`` (:mod:`workers.replay.record`) writes the cluster's streams and a snapshot
of the store to one file (:mod:`workers.replay.fileformat`, :mod:`workers.replay.records`);
``qwc replay`` (:mod:`workers.replay.engine`) feeds its heartbeats, in entry id order and
on a clock taken from the entry ids, through the same pure decisions as the liveness,
takeover and recovery workers (:mod:`workers.replay.liveness`,
:mod:`workers.replay.proposals`), and prints the timeline (:mod:`workers.replay.report`),
optionally beside what the workers recorded (:mod:`workers.replay.diff`), under the
recorded settings or a what-if (:mod:`workers.replay.settings`).
:mod:`workers.replay.synthetic` writes synthetic recordings for tests and the benchmark.
"""

from workers.replay.engine import ReplayResult, replay
from workers.replay.fileformat import FORMAT_VERSION, Recording, RecordingWriter, read_recording

__all__ = [
    "FORMAT_VERSION",
    "Recording",
    "RecordingWriter",
    "ReplayResult",
    "read_recording",
    "replay",
]
