"""The processes of QW Control cluster mode and what they share.

Subpackages: ``bus`` (Redis connection, embedded server, streams), ``store`` (SQL store),
``liveness`` (heartbeats -> view), ``cli`` (the ``qwc`` command).
"""
