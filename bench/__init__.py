"""Benchmarks: `voxlens bench ...` prints tables and writes JSON."""
