"""Notifications: the cluster's events, told to webhook receivers (docs/notifications.md).

Modules: ``events`` (building each event, pure), ``emit`` (appending events to
``{qwc}:events``: what the emitters call), ``payload`` (the JSON body, headers and
signature, pure), ``schedule`` (retry or give up, pure), ``deliver`` (one HTTP POST),
``receiver`` (one receiver's delivery loop), ``worker`` (``qwc worker notify``),
``failed`` (the deliveries given up), ``samples`` (``qwc notifications test``),
``status`` (what the metrics read).
"""
