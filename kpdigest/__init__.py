"""kpdigest: a weekly email digest built from feeds and an editor queue."""

__version__ = "0.1.0"
