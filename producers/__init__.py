"""What a member embeds, given a Redis client: the heartbeat producer and the command client.

Imports only ``schemas`` and ``redis``; never ``workers``.
"""
