"""Benchmarks a user can run; figures in bench/README.md."""
