"""SpamAssassin (local tests only) scores the default digest well below the spam line, and
scores a spammy message high, so the check can fail."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from pipeline.compose.check import sample_recipient, spamassassin_scores
from tests.conftest import require_tool
from tests.golden import fixed_issue

pytestmark = pytest.mark.slow


def _spammy() -> bytes:
    msg = EmailMessage()
    msg["From"] = "WINNER <winner@example.com>"
    msg["To"] = "you@example.com"
    msg["Subject"] = "FREE!!! $$$ CLAIM YOUR PRIZE NOW 100% GUARANTEED"
    msg.set_content("From the desk of the prize office:\nyou won.\n")  # a body line starting "From "
    msg.add_alternative("<html><body><font color='#ffffff' size=7>"
                        "<b>CLICK HERE!!! FREE MONEY!!! ACT NOW!!! 100% FREE, NO CATCH, "
                        "limited time offer, buy now, order now, winner, cash bonus</b>"
                        "</font></body></html>", subtype="html")
    return msg.as_bytes()


def test_default_digest_scores_below_2_and_spam_scores_high():
    require_tool("spamassassin")
    cfg = fixed_issue.config()
    digest = fixed_issue.prepared(cfg).mime.build(sample_recipient(cfg))
    results = spamassassin_scores([digest, _spammy(), digest])
    assert results is not None and len(results) == 3 and all(results)
    ours, spam, again = results
    fired = ", ".join(f"{name} {pts:+.1f}" for pts, name, _ in ours.rules)
    print(f"default digest: SpamAssassin score {ours.score} ({fired})")
    assert ours.score < 2.0, fired
    assert ours.required == 5.0 and again.score == ours.score
    assert spam.score >= 2.0 and spam.score > ours.score + 2, spam
    assert {name for _, name, _ in ours.rules} >= {"HTML_MESSAGE"}
