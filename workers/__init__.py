"""The processes of QW Control cluster mode and what they share.

From the bottom layer up (docs/architecture.md draws them; tests/test_architecture.py
holds them against the imports): ``bus`` (Redis: connections, the embedded server,
streams), ``store`` (the SQL store), ``tables`` (terminal tables), ``gcpause`` (pausing
Python's cyclic garbage collector around bulk work); ``liveness`` (heartbeats -> the view
and its state changes), ``notify`` (events -> webhooks); ``jobs`` (job specs, executors,
the JSON of jobs and executions); ``proposals`` (the lifecycle of a proposal about a dead
member); ``commands`` (remote execute / abort); ``takeover`` (jobs move) and ``recovery``
(running executions are retried), the two kinds of proposal; ``node`` (the reference
member), ``jobops`` (job administration); ``demo``, ``localcluster`` (a whole cluster on
this machine), ``replay`` (``qwc record`` / ``qwc replay``); ``manager`` (HTTP) and ``cli``
(``qwc``) on top.
"""
