"""Benchmark suite of cathodeflow (asv-style classes, runnable without asv: ``python -m benchmarks``)."""
