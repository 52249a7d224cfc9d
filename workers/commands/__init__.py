"""Remote execute / abort: commands to members, their choice of member, and their re-routing.

``decide`` (pure: which members may receive a remote execution, which one does), ``issue``
(what ``qwc run`` / ``qwc abort`` do: record, then publish on the member's command stream),
``reroute`` (a dead member's pending commands, which the recovery worker hands over). The member
side, which processes its stream every ``remoteExec.process.interval``, is
``workers.node.commands``. How it all flows: docs/commands.md.
"""
