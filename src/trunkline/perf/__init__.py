"""Benchmarks behind `trunkline perf`: each measures its baseline in the same run."""
