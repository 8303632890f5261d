"""Benchmarks: ``python -m bench NAME ... --url URL`` against a running server (``cluster``
starts its own servers)."""
