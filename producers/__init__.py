"""What a member embeds, given a Redis client: the heartbeat producer (``heartbeat``).

Imports only ``schemas`` and ``redis``; never ``workers``. (A member reads its remote
commands with ``workers.node.commands``: that is the reference node's, not an embeddable
client.)
"""
