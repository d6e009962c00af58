"""Loopback fakes of the mail providers, following each one's documented behaviour."""
