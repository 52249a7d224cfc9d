"""The processes of QW Control cluster mode and what they share.

From the bottom up (docs/architecture.md draws it): ``bus`` (Redis: connections, the
embedded server, streams), ``store`` (the SQL store), ``tables`` (terminal tables);
``liveness`` (heartbeats -> the view and its state changes), ``notify`` (events ->
webhooks), ``jobs`` (job specs, executors, the JSON of jobs and executions), ``jobops``
(job administration); ``proposals`` (the lifecycle of a proposal about a dead member,
shared by) ``takeover`` (jobs move) and ``recovery`` (running executions are retried);
``commands`` (remote execute / abort); ``node`` (the reference member); ``replay``
(``qwc record`` / ``qwc replay``); ``localcluster`` (a whole cluster on this machine),
``demo``; ``manager`` (HTTP) and ``cli`` (``qwc``) on top. ``gcpause`` pauses Python's
cyclic garbage collector around bulk work.
"""
