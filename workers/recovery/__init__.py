"""Recover executions: a dead member's running executions become ``incomplete`` and those
of jobs with retries left run again on a live member (``qwc worker recovery``)."""
