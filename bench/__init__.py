"""Benchmarks: each module prints one JSON object per result line on stdout, progress on stderr."""
