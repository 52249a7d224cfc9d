"""The pieces of ``qwc demo`` (``workers.cli.demo_cmd``): a whole cluster on one machine.

Modules: ``cluster`` (timings, config file, processes, jobs), ``observe`` (one reading of
Redis and the store, and the event lines), ``live`` (the rich rendering), ``summary`` (the
final verdict and JSON summary, pure).
"""
