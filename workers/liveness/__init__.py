"""Liveness: heartbeats in, member states (active, inactive, dead) and their changes out.

``rules`` is pure (a member's state at ``now`` and its next deadline); ``trust`` (which
heartbeats are believed) and ``beats`` (decoding a batch) come before the view; ``view``
is the shared view in Redis (states, last-seen times, stored heartbeats via ``info``, the
membership stream) with ``observe``, ``known`` and ``clock`` its per-batch helpers;
``worker`` is ``qwc worker liveness``; ``listing`` the member rows ``qwc members`` and the
manager show. docs/liveness.md describes the whole.
"""
