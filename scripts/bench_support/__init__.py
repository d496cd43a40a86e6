"""Helpers of scripts/bench.py: the drain benchmark (issue 3) and the Socket.IO latency benchmarks (issue 4)."""
