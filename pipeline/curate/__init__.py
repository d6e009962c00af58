"""Curate: the editor queue (links, tips, collected articles), draft review, and the
selection of the week's stories.

May import `core` and `pipeline.collect`.
"""
