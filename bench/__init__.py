"""Benchmarks that print comparison tables (python -m bench.fanout, bench.capacity, ...)."""
