"""Autotakeover: proposals for dead members, and the worker that commits them."""
