"""Deliver: the delivery ledger, the sending engine, pacing, admin control and the
transports that hand messages to a provider.

May import `core`, `subscribers` and the stages before it; `engine.send_issue` is the entry.
"""
