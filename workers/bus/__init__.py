"""Redis for the workers: clients (``connect``: the configured URL, Sentinel or Cluster, else
the embedded server of the data directory, ``embedded``), stream helpers (``streams``:
consumer groups, claim, ack, dead letters), entries stamped in the future (``future``),
and retrying transient Redis and SQL errors in the worker loops (``retry``).
"""
