"""Benchmarks, each figure beside a baseline and a target: `python -m bench.run` (or
`scripts/bench`); see bench/run.py."""
