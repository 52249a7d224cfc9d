"""Benchmarks: ``python -m bench <name>``. They print measured figures and ratios against the
raw Redis / SQL floor measured in the same run; nothing here is asserted in tests."""
