"""Pre-send checks of a frozen issue: what a careful editor would look at before pressing send.

Each variant's HTML and text are checked as a reader receives them (placeholders filled
with sample values): size against the budget, images without alt text, broken or
non-HTTPS links, the footer parts the law and the mailbox providers expect, and the
SpamAssassin score (local tests only) when `spamassassin` is installed. Problems block
`issue send` (unless --force); warnings are shown and do not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import lxml.html
import requests
from sqlalchemy import select

from core.config import Config
from core.context import Context
from core.errors import CheckFailed
from core.models import issue_variants
from pipeline.compose.issues import get_issue, web_url
from pipeline.compose.message import Recipient
from pipeline.compose.personalize import token
from pipeline.compose.prepare import PreparedVariant
from pipeline.compose.render import received_bytes

GMAIL_CLIP_BYTES = 102 * 1024
_WS_RE = re.compile(r"\s+")


@dataclass
class SpamResult:
    score: float
    required: float
    rules: list[tuple[float, str, str]] = field(default_factory=list)  # (points, name, description)


@dataclass
class CheckReport:
    number: int
    problems: list[str] = field(default_factory=list)  # each one blocks sending
    warnings: list[str] = field(default_factory=list)  # shown, not blocking
    info: list[str] = field(default_factory=list)
    spam: dict[str, SpamResult] = field(default_factory=dict)  # per variant label

    @property
    def ok(self) -> bool:
        return not self.problems


def sample_recipient(cfg: Config) -> Recipient:
    """A stand-in reader: links shaped like the real signed ones."""
    base = cfg.site.base_url.rstrip("/")
    return Recipient(0, "reader@example.com", "Sample Reader", f"{base}/unsubscribe/SAMPLE.TOKEN.SIG",
                     f"{base}/preferences/SAMPLE.TOKEN.SIG")


def check_issue(ctx: Context, number: int, *, spam: bool = True, fetch_links: bool = False) -> CheckReport:
    """Check every variant of issue `number`; `fetch_links` also requests each link."""
    cfg = ctx.config
    report = CheckReport(number)
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
        rows = conn.execute(select(issue_variants).where(issue_variants.c.issue_id == issue.id)
                            .order_by(issue_variants.c.variant)).all()
    if not rows:
        report.problems.append(f"issue #{number} has no rendered variants")
    links: dict[str, str] = {}
    variants: dict[str, PreparedVariant] = {}
    for row in rows:
        label = f"variant {row.variant or 'all topics'}"
        variants[label] = PreparedVariant(cfg, issue.id, issue.number, row.variant, issue.placeholder_key,
                                          issue.subject, row.html_template, row.text_template)
        links.update(check_variant(cfg, variants[label], label, report, web_url(cfg, number)))
    if spam and variants:
        _spam(cfg, variants, report)
    if fetch_links:
        for url, problem in fetch_problems(links, cfg.collect.user_agent).items():
            report.problems.append(f"broken link {url} ({problem}; in {links[url]})")
    return report


def check_variant(cfg: Config, variant: PreparedVariant, label: str, report: CheckReport,
                  web_link: str) -> dict[str, str]:
    """Size, images, links and footer of one variant; returns its external links."""
    size = received_bytes(variant.html_template, variant.key)
    report.info.append(f"{label}: {size} bytes of HTML (budget {cfg.digest.max_html_bytes}, "
                       f"Gmail clips at {GMAIL_CLIP_BYTES})")
    if size > cfg.digest.max_html_bytes:
        report.problems.append(f"{label}: HTML is {size} bytes, over the "
                               f"{cfg.digest.max_html_bytes}-byte budget")
    reader = sample_recipient(cfg)
    _one_click(variant.headers_for(reader), label, report)
    html = variant.html_for(reader)
    doc = lxml.html.document_fromstring(html)
    _images(doc, label, report)
    links = _links(doc, label, report, own=(reader.unsubscribe_url, reader.preferences_url, web_link))
    _footer(cfg, variant, label, report, html=doc.text_content(), text=variant.text_for(reader),
            hrefs=set(links) | {a.get("href") for a in doc.iter("a")}, web_link=web_link)
    # Per-reader links (and the footer's pause link under the preferences one) carry a
    # signed token: the sample's token is not valid, so they are not fetched.
    return {u: label for u in links if not u.startswith((reader.unsubscribe_url, reader.preferences_url))}


def _one_click(headers: dict[str, str], label: str, report: CheckReport) -> None:
    """RFC 8058: one-click unsubscribe (a POST without confirmation) over HTTPS only; a
    plain-http base URL gets an ordinary unsubscribe link, said here."""
    target = headers.get("List-Unsubscribe", "").split(",")[0].strip(" <>")
    if "List-Unsubscribe-Post" in headers and not target.lower().startswith("https://"):
        report.problems.append(f"{label}: one-click unsubscribe (List-Unsubscribe-Post) over "
                               f"http ({target}): RFC 8058 requires https; set site.base_url "
                               "to an https URL")
    elif "List-Unsubscribe-Post" not in headers:
        report.info.append(f"{label}: no one-click unsubscribe: site.base_url is not https "
                           "(RFC 8058); fine for a local trial, set https for real readers")


def _images(doc: Any, label: str, report: CheckReport) -> None:
    for img in doc.iter("img"):
        src = img.get("src") or "(no src)"
        if not (img.get("alt") or "").strip():
            report.problems.append(f"{label}: image without alt text: {src}")
        if not img.get("width"):
            report.warnings.append(f"{label}: image without an explicit width: {src}")
        if urlsplit(src).scheme != "https":
            report.warnings.append(f"{label}: image not served over HTTPS: {src}")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def link_problem(href: str | None) -> str | None:
    """Why a link is broken as written (None: well-formed http(s) or mailto)."""
    href = (href or "").strip()
    if not href or href.startswith("#"):
        return "empty or fragment-only link"
    if any(c.isspace() for c in href):
        return "link contains whitespace"
    try:
        parts = urlsplit(href)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        return f"malformed link ({exc})"
    if parts.scheme == "mailto":
        return None if "@" in parts.path else "mailto link without an address"
    if parts.scheme not in ("http", "https"):
        return f"unsupported link scheme {parts.scheme or '(relative)'!r}"
    if not parts.hostname or ("." not in parts.hostname and parts.hostname != "localhost"):
        return "link without a valid host"
    return None


def _links(doc: Any, label: str, report: CheckReport, own: tuple[str, ...]) -> list[str]:
    seen: list[str] = []
    for a in doc.iter("a"):
        href = a.get("href")
        problem = link_problem(href)
        if problem:
            report.problems.append(f"{label}: {problem}: {href!r} ({_text(a)})")
            continue
        if href in seen:
            continue
        seen.append(href)
        if urlsplit(href).scheme == "http":
            local = urlsplit(href).hostname in LOOPBACK  # a local trial: no reader gets it
            bucket = report.problems if href in own and not local else report.warnings
            bucket.append(f"{label}: link is not HTTPS: {href}"
                          + (" (loopback: a local trial only)" if local else ""))
    return [h for h in seen if urlsplit(h).scheme in ("http", "https")]


def _text(el: Any) -> str:
    return _WS_RE.sub(" ", el.text_content()).strip()[:60] or "no link text"


def _footer(cfg: Config, variant: PreparedVariant, label: str, report: CheckReport, *,
            html: str, text: str, hrefs: set[str | None], web_link: str) -> None:
    """The parts every digest must carry, in both the HTML and the text part."""
    html_flat, text_flat = _flat(html), _flat(text)
    for part, template in (("HTML", variant.html_template), ("text", variant.text_template)):
        for field_name, what in (("unsubscribe_url", "unsubscribe link"),
                                 ("preferences_url", "preferences link")):
            if token(variant.key, field_name) not in template:
                report.problems.append(f"{label}: {part} part lacks the per-recipient {what}")
    if web_link not in hrefs:
        report.problems.append(f"{label}: HTML part lacks the web-version link {web_link}")
    if web_link not in text:
        report.problems.append(f"{label}: text part lacks the web-version link")
    needed = [("postal address", cfg.site.postal_address), ("health disclaimer", cfg.site.disclaimer),
              ("reason for receiving it", "subscribed")]
    for what, needle in needed:
        if not needle:
            if what == "postal address":
                report.problems.append(f"{label}: site.postal_address is empty; the footer needs one")
            continue
        for part, flat in (("HTML", html_flat), ("text", text_flat)):
            if _flat(needle).lower() not in flat.lower():
                report.problems.append(f"{label}: {part} footer lacks the {what}")


def _flat(text: str) -> str:
    return _WS_RE.sub(" ", text).strip()


def fetch_problems(links: dict[str, str], user_agent: str, timeout: float = 8.0) -> dict[str, str]:
    """Request each link (HEAD, else GET); what failed and why."""
    def probe(url: str) -> tuple[str, str | None]:
        headers = {"User-Agent": user_agent}
        try:
            r = requests.head(url, timeout=timeout, allow_redirects=True, headers=headers)
            if r.status_code in (403, 405, 501):
                with requests.get(url, timeout=timeout, allow_redirects=True, headers=headers,
                                  stream=True) as r:
                    r.raw.read(65536)  # enough to know it answers; a large page is not downloaded
        except requests.RequestException as exc:
            return url, exc.__class__.__name__
        return url, f"HTTP {r.status_code}" if r.status_code >= 400 else None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return {u: p for u, p in pool.map(probe, sorted(links)) if p}


_MBOX_FROM = "From kpdigest-check@localhost Thu Jan  1 00:00:00 1970"
_FROM_LINE = re.compile(rb"^(>*From )", re.M)


def spamassassin_scores(messages: list[bytes], timeout: float = 300.0) -> list[SpamResult | None] | None:
    """SpamAssassin's verdict on each message with local tests only (-L: no DNS, no
    network), or None when it is not installed. One process for all messages (an mbox):
    loading the rules costs more than scoring. Bayes is off and nothing is learnt, so a
    score depends only on the message and the installed rules."""
    exe = shutil.which("spamassassin")
    if not exe:
        return None
    # SpamAssassin may reorder an mbox (it sorts by date), so each message carries its index.
    mbox = b"".join(_MBOX_FROM.encode() + b"\n" + f"X-Kpdigest-Check: {i}\n".encode()
                    + _FROM_LINE.sub(rb">\1", m.replace(b"\r\n", b"\n")) + b"\n"
                    for i, m in enumerate(messages))
    with tempfile.TemporaryDirectory(prefix="kpd-sa-") as home:
        done = subprocess.run(
            [exe, "-L", "-t", "--mbox", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0",
             "-p", os.path.join(home, "prefs")],
            input=mbox, capture_output=True, timeout=timeout, env={**os.environ, "HOME": home},
            check=False)
    results: list[SpamResult | None] = [None] * len(messages)
    for out in done.stdout.decode("utf-8", "replace").split(_MBOX_FROM + "\n")[1:]:
        index = re.search(r"^X-Kpdigest-Check: (\d+)$", out, re.M)
        if index and int(index.group(1)) < len(messages):
            results[int(index.group(1))] = parse_report(out)
    return results


def spamassassin_score(message: bytes, timeout: float = 120.0) -> SpamResult | None:
    """`spamassassin_scores` for one message."""
    results = spamassassin_scores([message], timeout)
    return results[0] if results else None


def parse_report(output: str) -> SpamResult | None:
    """Score, threshold and fired rules from `spamassassin -t` output."""
    m = re.search(r"^X-Spam-Status: .*?score=(-?[\d.]+) required=(-?[\d.]+)", output, re.M)
    if not m:
        return None
    result = SpamResult(float(m.group(1)), float(m.group(2)))
    table = output.split("---- ---------------------- ", 1)
    if len(table) == 2:
        for line in table[1].splitlines()[1:]:
            if not line.strip():
                break
            rule = re.match(r"^\s*(-?\d+(?:\.\d+)?)\s+(\S+)\s+(.*)$", line)
            if rule:
                result.rules.append((float(rule.group(1)), rule.group(2), rule.group(3).strip()))
            elif result.rules:
                pts, name, desc = result.rules[-1]
                result.rules[-1] = (pts, name, f"{desc} {line.strip()}")
    return result


def _spam(cfg: Config, variants: dict[str, PreparedVariant], report: CheckReport) -> None:
    reader = sample_recipient(cfg)
    results = spamassassin_scores([v.mime.build(reader) for v in variants.values()])
    if results is None:
        report.info.append("SpamAssassin is not installed: spam score not checked")
        return
    for label, result in zip(variants, results, strict=True):
        if result is None:
            report.warnings.append(f"{label}: SpamAssassin gave no verdict")
            continue
        report.spam[label] = result
        report.info.append(f"{label}: SpamAssassin score {round(result.score, 1) + 0.0:.1f} "
                           f"(local tests; {len(result.rules)} rules fired)")
        if result.score >= cfg.digest.max_spam_score:
            report.problems.append(f"{label}: SpamAssassin score {result.score:.1f} reaches "
                                   f"digest.max_spam_score {cfg.digest.max_spam_score}")


def ensure_sendable(ctx: Context, number: int) -> None:
    """Raise CheckFailed listing the problems; `issue send --force` skips this."""
    report = check_issue(ctx, number)
    if not report.ok:
        raise CheckFailed(f"issue #{number} fails its checks: " + "; ".join(report.problems)
                          + " (use --force to send anyway)")
