"""Benchmarks against a running server: ``python -m bench NAME ... --url URL``."""
