"""Benchmarks of what a sync costs: `python -m bench.run` writes bench/RESULTS.md.

Not tests: nothing here asserts a time. Each run starts its own control plane, local EGP server
and operator, measures, and stops them all again.
"""
