"""Step-time benchmarks for tracegrad; run them with `python benchmarks/run.py`."""
