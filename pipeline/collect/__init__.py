"""Collect: fetch feeds, parse and sanitise entries, give each a stable identity and a
relevance score, store it, and group near-duplicates into stories.

May import `core` only (plus third-party libraries); `run.collect` is the entry point.
"""
