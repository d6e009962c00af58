"""Benchmarks: each module measures one stage and prints figures for docs/benchmarks.md."""
