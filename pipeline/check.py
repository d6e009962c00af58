"""Pre-send checks of a frozen issue: what a careful editor would look at before pressing send."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from kpdigest.context import Context
from kpdigest.errors import CheckFailed
from kpdigest.models import issue_variants
from pipeline.issues import get_issue


@dataclass
class CheckReport:
    number: int
    problems: list[str] = field(default_factory=list)  # each one blocks sending
    info: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_issue(ctx: Context, number: int) -> CheckReport:
    """Size budget and the footer parts every digest must carry."""
    report = CheckReport(number)
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
        variants = conn.execute(select(issue_variants).where(issue_variants.c.issue_id == issue.id)).all()
    for v in variants:
        label = f"variant {v.variant or 'all topics'}"
        report.info.append(f"{label}: {v.html_bytes} bytes of HTML")
        if v.html_bytes > ctx.config.digest.max_html_bytes:
            report.problems.append(f"{label}: HTML is {v.html_bytes} bytes, over the "
                                   f"{ctx.config.digest.max_html_bytes}-byte budget")
        for needle, what in ((issue.placeholder_key, "per-recipient links"),
                             (ctx.config.site.postal_address, "postal address")):
            if needle and needle not in v.html_template:
                report.problems.append(f"{label}: footer lacks the {what}")
    return report


def ensure_sendable(ctx: Context, number: int) -> None:
    """Raise CheckFailed listing the problems; `issue send --force` skips this."""
    report = check_issue(ctx, number)
    if not report.ok:
        raise CheckFailed(f"issue #{number} fails its checks: " + "; ".join(report.problems)
                          + " (use --force to send anyway)")
