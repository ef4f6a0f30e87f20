"""Parity tests: the same snippet run in tracegrad and in PyTorch must give the same results."""
