"""`kpdigest issue send/status/pause/resume/cancel/retry`: thin shells over
pipeline.deliver.engine and pipeline.deliver.control."""

from __future__ import annotations

import sys
import threading

import click

from kpdigest.base import Lazy, get, outcome_exit_code, pass_ctx, plural


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@click.command()
@click.argument("number", type=int)
@click.option("--force", is_flag=True, help="Send even if the issue fails its pre-send checks.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: when stderr is a terminal).")
@pass_ctx
def send(obj: Lazy, number: int, force: bool, progress: bool | None) -> None:
    """Send a frozen issue through the configured transport (resumes where it stopped).

    SIGTERM or Ctrl-C finishes the batches in flight and leaves the rest queued; run the
    command again to continue. Another sender may run at the same time.
    """
    from pipeline.deliver.control import issue_progress
    from pipeline.deliver.engine import send_issue, stop_on_signals

    ctx = get(obj)
    before = issue_progress(ctx, number)
    todo = sum(before.counts.values()) - before.done
    show = sys.stderr.isatty() if progress is None else progress
    with stop_on_signals(threading.Event()) as stop, \
            click.progressbar(length=todo, label=f"issue #{number}", file=sys.stderr,
                              show_eta=True, show_pos=True) as bar:
        r = send_issue(ctx, number, force=force, stop=stop,
                       progress=bar.update if show else None)
    c = r.counts
    totals = ", ".join(f"{k} {v}" for k, v in c.items() if v or k in ("sent", "failed", "unknown"))
    click.echo(f"issue #{number}: {r.status}; sent now {r.sent_now}; totals: {totals}")
    if r.recovered_unknown:
        click.echo(f"{plural(r.recovered_unknown, 'recipient')} left in flight by a stopped "
                   f"sender {'is' if r.recovered_unknown == 1 else 'are'} now unknown "
                   f"({c['unknown']} unknown in all)", err=True)
    if r.requeued:
        click.echo(f"{plural(r.requeued, 'recipient')} claimed by a stopped sender but never "
                   "posted went back to the queue", err=True)
    p = issue_progress(ctx, number)
    for g in p.errors:
        click.echo(f"  {g.state} {g.count}: {g.reason}", err=True)
    if p.next_step and r.status not in ("sending", "paused"):
        click.echo(f"next: {p.next_step}", err=True)
    if r.paused and r.paused.startswith("issue is"):  # paused or cancelled from elsewhere
        click.echo(f"stopped: {r.paused}", err=True)
    elif r.paused:
        click.echo(f"paused: {r.paused}; fix the cause, then `kpdigest issue resume {number}`", err=True)
    elif r.waiting:
        click.echo(f"waiting: {r.waiting}; {c['queued']} still queued", err=True)
    elif r.stopped:
        click.echo(f"stopped; {c['queued']} still queued: run `kpdigest issue send {number}` to continue",
                   err=True)
    code = outcome_exit_code(r.status)
    if code:
        sys.exit(code)


@click.command()
@click.argument("number", type=int, required=False)
@pass_ctx
def status(obj: Lazy, number: int | None) -> None:
    """Counts per delivery state, the sending rate and the time left."""
    from pipeline.compose.issues import get_issue
    from pipeline.deliver.control import issue_progress
    from pipeline.deliver.doctor.rates import sending_rates

    ctx = get(obj)
    ctx.require_schema()
    with ctx.engine.connect() as conn:
        row = get_issue(conn, number)
    p = issue_progress(ctx, row.number)
    why = f" ({p.pause_reason})" if p.status in ("paused", "failed") and p.pause_reason else ""
    click.echo(f"issue #{row.number} ({row.period}): {p.status}{why}")
    for state, n in p.counts.items():
        click.echo(f"  {state:<11}{n:>9}")
    click.echo(f"  {'total':<11}{p.total:>9}")
    if p.resent:
        click.echo(f"{plural(p.resent, 'recipient')} may have received it twice "
                   "(resent after an unknown outcome)")
    if p.errors:
        click.echo("errors by reason:")
        for g in p.errors:
            click.echo(f"  {g.state} {g.count}: {g.reason}")
    if p.total > p.done:
        click.echo(f"rate {p.rate:.1f}/s over the last minute; ETA {_duration(p.eta_seconds)}")
    if p.next_step:
        click.echo(f"next: {p.next_step}")
    click.echo(f"reputation: {sending_rates(ctx).line()}")


@click.command()
@click.argument("number", type=int)
@click.option("--reason", default=None, help="Why (shown by `issue status`).")
@pass_ctx
def pause(obj: Lazy, number: int, reason: str | None) -> None:
    """Stop sending after the batches in flight; `issue resume` continues."""
    from pipeline.deliver.control import pause_issue

    pause_issue(get(obj), number, reason)
    click.echo(f"issue #{number} paused")


@click.command()
@click.argument("number", type=int)
@pass_ctx
def resume(obj: Lazy, number: int) -> None:
    """Make a paused issue sendable again."""
    from pipeline.deliver.control import resume_issue

    resume_issue(get(obj), number)
    click.echo(f"issue #{number} resumed: run `kpdigest issue send {number}` (or wait for the scheduler)")


@click.command()
@click.argument("number", type=int)
@click.confirmation_option(prompt="Cancel this issue for everyone not sent yet?")
@pass_ctx
def cancel(obj: Lazy, number: int) -> None:
    """Stop an issue for good; recipients not sent yet stay queued as the record."""
    from pipeline.deliver.control import cancel_issue

    cancel_issue(get(obj), number)
    click.echo(f"issue #{number} cancelled")


@click.command()
@click.argument("number", type=int)
@click.option("--failed", is_flag=True, help="Queue recipients whose delivery failed.")
@click.option("--unknown", is_flag=True,
              help="Queue recipients whose outcome is unknown. They MAY already have the issue.")
@pass_ctx
def retry(obj: Lazy, number: int, failed: bool, unknown: bool) -> None:
    """Queue failed and/or unknown recipients again, then run `issue send`."""
    from pipeline.deliver.control import retry_issue

    n = retry_issue(get(obj), number, failed=failed, unknown=unknown)
    click.echo(f"{plural(n, 'recipient')} queued again for issue #{number}: run "
               f"`kpdigest issue send {number}`")


@click.command()
@click.argument("number", type=int)
@pass_ctx
def reconcile(obj: Lazy, number: int) -> None:
    """Ask the provider which `unknown` recipients it accepted (also done before every send).

    Exits 0 when nobody is left unknown, 8 (needs attention) otherwise.
    """
    from pipeline.deliver.reconcile import reconcile_issue

    r = reconcile_issue(get(obj), number)
    if not r.asked:
        click.echo(f"issue #{number}: no unknown recipients; nothing to reconcile")
        return
    click.echo(f"issue #{number}: asked about {plural(r.asked, 'unknown recipient')}: "
               f"{r.accepted} accepted (now sent), {r.requeued} queued again with their "
               f"idempotency key, {r.still_unknown} still unknown; now {r.status}")
    click.echo(f"how: {r.how}")
    if r.still_unknown:
        click.echo(f"next: `kpdigest issue retry {number} --unknown` resends the rest (they "
                   "may get it twice; each gets a note on their history)", err=True)
        sys.exit(outcome_exit_code("needs attention"))


def register(issue: click.Group) -> None:
    for cmd in (send, status, pause, resume, cancel, retry, reconcile):
        issue.add_command(cmd)
