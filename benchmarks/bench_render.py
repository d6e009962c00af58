"""Rendering and personalisation: the per-recipient cost of the digest.

Measures, on one core, the fixed 12-article issue of the golden tests:
- personalised HTML bodies per second (`PreparedVariant.html_for`),
- complete MIME messages per second (`MessageTemplate.build`: headers, both parts, QP),
- the naive way for the ratio: Jinja2 + premailer + `EmailMessage` per recipient, and
  `EmailMessage` alone (the issue's "about 260 messages/s").

Run: `.venv/bin/python -m benchmarks.bench_render [--recipients N] [--naive N]`
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

from pipeline.compose.message import Recipient, address
from pipeline.compose.render import environment, inline_css
from subscribers.tokens import link
from tests.golden import fixed_issue


def _recipients(n: int) -> list[Recipient]:
    """Real signed links, made before the clock starts (that is the sender's cost)."""
    base, secret = "https://digest.example.com", "bench-secret"
    return [Recipient(i, f"reader{i}@example.com", f"Reader Nümber {i}" if i % 3 else "",
                      link(base, secret, "unsubscribe", i), link(base, secret, "preferences", i))
            for i in range(1, n + 1)]


def _rate(fn: Callable[[Recipient], Any], people: list[Recipient]) -> tuple[float, int]:
    size = 0
    start = time.perf_counter()
    for r in people:
        size = len(fn(r))
    return len(people) / (time.perf_counter() - start), size


def _naive(cfg: Any, items: list[dict[str, Any]]) -> Callable[[Recipient], bytes]:
    """What the design avoids: render, inline and build a message for every recipient."""
    from pipeline.compose.render import _context, article_view

    env = environment(cfg)
    views = [article_view(a, cfg, fixed_issue.KEY) for a in items]

    def one(r: Recipient) -> bytes:
        ctx = _context(cfg, number=fixed_issue.NUMBER, date=fixed_issue.DATE, subject="s", intro="",
                       articles=views, key=fixed_issue.KEY, web_url="https://digest.example.com/issues/42")
        ctx["recipient"] = {**r.values()}
        html = inline_css(env.get_template("email/digest.html.j2").render(ctx))
        text = env.get_template("email/digest.txt.j2").render(ctx)
        return _message(cfg, r, text, html)

    return one


def _message(cfg: Any, r: Recipient, text: str, html: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = address(cfg.sender.from_name, cfg.sender.from_email)
    msg["To"] = address(r.name, r.email)
    msg["Subject"] = "The Smooth Skin Digest #42: Pat, don't rub"
    msg["List-Unsubscribe"] = f"<{r.unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text, cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return msg.as_bytes(policy=SMTP)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20000)
    parser.add_argument("--naive", type=int, default=20)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    cfg = fixed_issue.config()
    items = fixed_issue.articles()
    start = time.perf_counter()
    variant = fixed_issue.prepared(cfg, fixed_issue.render(cfg, items))
    variant.mime  # noqa: B018 - build the MIME template once, as a send does
    once = time.perf_counter() - start
    people = _recipients(args.recipients)
    bodies, html_size = _rate(variant.html_for, people)
    mimes, mime_size = _rate(lambda r: variant.mime.build(r), people)
    plain, _ = _rate(lambda r: _message(cfg, r, variant.text_for(r), variant.html_for(r)),
                     people[: max(args.naive * 10, 50)])
    naive, _ = _rate(_naive(cfg, items), people[: args.naive])
    print(f"render once (Jinja2 + premailer + MIME template): {once * 1000:.0f} ms")
    print(f"personalised HTML bodies/s:  {bodies:>10,.0f}  ({html_size:,} chars each)")
    print(f"complete MIME messages/s:    {mimes:>10,.0f}  ({mime_size:,} bytes each)")
    print(f"EmailMessage per recipient:  {plain:>10,.0f}  (bodies pre-rendered)")
    print(f"naive (Jinja2+premailer+EmailMessage per recipient): {naive:,.1f}/s")
    print(f"ratio MIME / naive: {mimes / naive:,.0f}x; MIME / EmailMessage: {mimes / plain:,.0f}x")


if __name__ == "__main__":
    main()
