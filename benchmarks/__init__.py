"""Benchmark scripts: each prints its figures; none asserts on time."""
