"""The ``qwc`` command (click): ``main`` builds the group from each ``*_cmd`` module's
``COMMANDS``; ``common`` holds what they share (settings, JSON output, exits, signals).
The commands only parse, call the other packages and print: nothing is decided here.
"""
