"""What editors see (#19): clicks and unique readers per issue, each link's share, each
section's and source's click-through, machine traffic apart, feeds over time, CSV; the
same figures from `kpdigest issue clicks` and the desk page."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import update

from core.db import utcnow
from core.models import issues
from kpdigest.main import main as cli
from pipeline.deliver.engine import send_issue
from pipeline.measure.links import make_link_token
from pipeline.measure.report import feed_clicks, issue_clicks
from tests import measure_helpers
from tests.measure_helpers import BROWSER, counted_issue, links_of, wait_clicks
from tests.test_web_helpers import login_as

SECRET = "test-secret-key"
measured_app = measure_helpers.measured_app  # the fixture


def _clicked_issue(make_ctx, feed_server, measured_app):
    """Issue sent to 3 readers; link A clicked by 2 readers (one twice), link B by one,
    plus a HEAD and a Googlebot visit on A."""
    ctx, built = counted_issue(make_ctx, feed_server)
    send_issue(ctx, built.number, force=True)
    with ctx.engine.begin() as conn:  # long enough ago for clicks to be readers'
        conn.execute(update(issues).where(issues.c.id == built.issue_id)
                     .values(send_started_at=utcnow() - timedelta(hours=2)))
    rows = [r for r in links_of(ctx, built.issue_id) if r.variant == ""]
    a, b = rows[0], rows[-1]
    client = measured_app(ctx).test_client()

    def go(link, agent, method="get"):
        path = f"/r/{make_link_token(SECRET, built.issue_id, link.id)}"
        assert getattr(client, method)(path, headers={"User-Agent": agent}).status_code == 302

    go(a, BROWSER + " reader-1")
    go(a, BROWSER + " reader-1")
    go(a, BROWSER + " reader-2")
    go(b, BROWSER + " reader-2")
    go(a, BROWSER, "head")
    go(a, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
    wait_clicks(ctx, 6)
    return ctx, built, a, b


def test_issue_figures(make_ctx, feed_server, measured_app):
    ctx, built, a, b = _clicked_issue(make_ctx, feed_server, measured_app)
    r = issue_clicks(ctx, built.number)
    assert (r.recipients, r.clicks, r.unique, r.machine) == (3, 4, 2, 2)
    assert r.machine_reasons == {"head": 1, "agent": 1}
    links = {row.key: row for row in r.links}
    assert (links[a.url].clicks, links[a.url].unique, links[a.url].machine) == (3, 2, 2)
    assert links[a.url].share == 0.75 and links[b.url].share == 0.25
    assert abs(links[a.url].rate - 2 / 3) < 1e-9
    assert sum(row.clicks for row in r.links) == 4
    sections = {row.key: row for row in r.sections}
    assert sections[a.section].clicks >= 1 and sum(s.clicks for s in r.sections) == 4
    assert sum(s.clicks for s in r.sources) == 4
    assert all(row.clicks == 0 for row in r.links if row.key not in (a.url, b.url))
    feeds = {f["feed"]: f for f in feed_clicks(ctx)}
    assert set(feeds) == {"KP Feed", "Beauty Feed"}
    assert sum(f["total"] for f in feeds.values()) == 4
    assert all(f["issues"] == [built.number] for f in feeds.values())


def test_cli_and_csv(make_ctx, feed_server, measured_app, tmp_path):
    ctx, built, a, _ = _clicked_issue(make_ctx, feed_server, measured_app)
    run = CliRunner().invoke(cli, ["--config", str(ctx.config.source), "issue", "clicks",
                                   str(built.number), "--csv", str(tmp_path / "c.csv")])
    assert run.exit_code == 0, run.output
    assert f"issue #{built.number}: 4 clicks by 2 readers of 3" in run.output
    assert "machine traffic apart: 2 (agent 1, head 1)" in run.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "c.csv").read_text())))
    link_a = next(r for r in rows if r["kind"] == "link" and r["key"] == a.url)
    assert (link_a["clicks"], link_a["unique_readers"], link_a["share"]) == ("3", "2", "0.7500")
    run = CliRunner().invoke(cli, ["--config", str(ctx.config.source), "issue", "clicks", "99"])
    assert run.exit_code == 3 and "no issue #99" in run.output


def test_desk_page_and_csv_download(make_ctx, feed_server, measured_app):
    ctx, built, _, _ = _clicked_issue(make_ctx, feed_server, measured_app)
    client = measured_app(ctx).test_client()
    page = f"/desk/issues/{built.number}/clicks"
    assert client.get(page).status_code == 302  # login first
    login_as(client, ctx, "editor")
    assert f'href="{page}"' in client.get(f"/desk/issues/{built.number}").get_data(as_text=True)
    html = client.get(page).get_data(as_text=True)
    assert '<strong id="clicks-readers">4</strong>' in html
    assert '<strong id="clicks-unique">2</strong>' in html
    assert '<span id="clicks-machine">2</span>' in html
    resp = client.get(f"{page[:-len('clicks')]}clicks.csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.get_data(as_text=True).startswith("issue,kind,key,clicks")
