"""Compose: freeze an issue (articles, audience, rendered variants), render it once per
variant, build its MIME template, personalise per recipient cheaply, and check it.

May import `core`, `subscribers`, `pipeline.collect` and `pipeline.curate`.
"""
