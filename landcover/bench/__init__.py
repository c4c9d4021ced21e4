"""Benchmark programs: each prints a table and writes JSON (and PNGs where useful)."""
