"""The processes of QW Control cluster mode and what they share.

Subpackages: ``bus`` (Redis connection, embedded server, streams), ``store`` (SQL store),
``liveness`` (heartbeats -> view), ``jobs`` (job specs, executors and the JSON of jobs
and executions, shared by the CLI and the manager), ``cli`` (the ``qwc`` command).
"""
