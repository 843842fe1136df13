"""Benchmarks of search quality and orchestration (run them as `python -m benchmarks.<name>`)."""
