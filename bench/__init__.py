"""Benchmarks of SPEC §9: `python -m bench.run` (or `scripts/bench`); see bench/run.py."""
