"""Point a test's config file at a fake provider, for tests that run real subprocesses
(which read the file, not in-process overrides)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DEFAULT_URLS = {"postmark": "https://api.postmarkapp.com", "sendgrid": "https://api.sendgrid.com",
                "mailgun": "https://api.mailgun.net", "resend": "https://api.resend.com"}


def use_provider(path: Path, kind: str, base_url: str, **sending: Any) -> Path:
    """Rewrite `transport.name`, the provider's base_url and [sending] keys in place."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^name = "outbox"', f'name = "{kind}"', text)
    if kind in DEFAULT_URLS:
        text = text.replace(f'base_url = "{DEFAULT_URLS[kind]}"', f'base_url = "{base_url}"')
    for key, value in sending.items():
        text, n = re.subn(rf"(?m)^{key} = \S+", f"{key} = {value}", text, count=1)
        assert n == 1, key
    path.write_text(text, encoding="utf-8")
    return path
