""""More / less like this" (#19): signed one-click vote links per story, counted per topic
and source apart from clicks, and a weight suggestion applied only on an editor's approval."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from core.config import load_config
from core.errors import NotFound
from core.models import events, issue_links
from kpdigest.main import main as cli
from pipeline.measure.links import make_link_token, vote_serializer
from pipeline.measure.report import issue_clicks, weight_suggestions
from pipeline.measure.weights import rewrite_weight
from tests import measure_helpers
from tests.measure_helpers import BROWSER, counted_issue, variant, wait_clicks
from tests.test_web_helpers import csrf, login_as

SECRET = "test-secret-key"
measured_app = measure_helpers.measured_app  # the fixture
VOTE_RE = re.compile(r'href="https://digest\.example\.com/f/([A-Za-z0-9_.\-]+)"')


def _link(ctx, issue_id, section):
    with ctx.engine.connect() as conn:
        return conn.execute(select(issue_links).where(
            issue_links.c.issue_id == issue_id, issue_links.c.variant == "",
            issue_links.c.section == section)).first()


def _voted(make_ctx, feed_server, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server)
    app = measured_app(ctx)
    client = app.test_client()
    kp, beauty = _link(ctx, built.issue_id, "kp"), _link(ctx, built.issue_id, "beauty-tips")
    v = vote_serializer(SECRET)
    for i in range(3):
        resp = client.get(f"/f/{v.dumps([built.issue_id, kp.id, 1])}",
                          headers={"User-Agent": f"{BROWSER} {i}"})
        assert resp.status_code == 200 and "more stories like this" in resp.get_data(as_text=True)
    client.get(f"/f/{v.dumps([built.issue_id, beauty.id, -1])}", headers={"User-Agent": BROWSER})
    client.head(f"/f/{v.dumps([built.issue_id, beauty.id, -1])}", headers={"User-Agent": BROWSER})
    wait_clicks(ctx, 5)
    return ctx, built, client, kp, beauty


def test_every_story_has_signed_vote_links(make_ctx, feed_server, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server)
    v = variant(ctx, built.issue_id)
    assert len(VOTE_RE.findall(v.html_template)) == 2 * len(v.article_ids)
    assert v.text_template.count("More like this: https://digest.example.com/f/") == \
        len(v.article_ids)
    client = measured_app(ctx).test_client()
    link = _link(ctx, built.issue_id, "kp")
    click_token = make_link_token(SECRET, built.issue_id, link.id)
    vote_token = vote_serializer(SECRET).dumps([built.issue_id, link.id, 1])
    for path in (f"/f/{click_token}", f"/r/{vote_token}", f"/f/{vote_token[:-3]}",
                 "/f/" + vote_serializer(SECRET).dumps([built.issue_id, link.id, 5]),
                 "/f/" + vote_serializer(SECRET).dumps([built.issue_id + 7, link.id, 1])):
        resp = client.get(path)
        assert resp.status_code == 400 and "Location" not in resp.headers, path


def test_votes_are_counted_per_topic_and_source_apart_from_clicks(make_ctx, feed_server,
                                                                  measured_app):
    ctx, built, _, kp, beauty = _voted(make_ctx, feed_server, measured_app)
    r = issue_clicks(ctx, built.number)
    assert (r.clicks, r.machine) == (0, 0)  # votes are not clicks
    got = {(v.kind, v.key): (v.more, v.less) for v in r.votes}
    assert got[("section", "kp")] == (3, 0)
    assert got[("section", "beauty-tips")] == (0, 1)  # the HEAD (a scanner) is not counted
    assert kp.source != beauty.source
    assert got[("source", kp.source)] == (3, 0) and got[("source", beauty.source)] == (0, 1)
    s = {x.topic: x for x in weight_suggestions(ctx)}
    assert (s["kp"].more, s["kp"].less, s["kp"].current, s["kp"].suggested) == (3, 0, 2.0, 2.25)
    assert (s["beauty-tips"].current, s["beauty-tips"].suggested) == (1.0, 0.95)


def test_a_suggestion_is_applied_only_on_approval(make_ctx, feed_server, measured_app):
    ctx, built, client, _, _ = _voted(make_ctx, feed_server, measured_app)
    path = ctx.config.source
    assert load_config(path).topics["kp"].weight == 2.0  # votes alone change nothing
    run = CliRunner().invoke(cli, ["--config", str(path), "issue", "weights"])
    assert run.exit_code == 0 and "kp" in run.output and "suggested 2.25" in run.output
    run = CliRunner().invoke(cli, ["--config", str(path), "issue", "weights", "--apply", "kp",
                                   "--by", "ed@example.com"])
    assert run.exit_code == 0, run.output
    assert load_config(path).topics["kp"].weight == 2.25
    assert load_config(path).topics["beauty-tips"].weight == 1.0
    with ctx.engine.connect() as conn:
        ev = conn.execute(select(events).where(events.c.kind == "topic_weight")).one()
    assert ev.actor == "ed@example.com" and ev.detail["to"] == 2.25 and ev.detail["more"] == 3
    # from the desk: an editor approves beauty-tips
    login_as(client, ctx, "editor")
    page = f"/desk/issues/{built.number}/clicks"
    token = csrf(client, page)
    resp = client.post(f"/desk/issues/{built.number}/weights/beauty-tips",
                       data={"csrf_token": token})
    assert resp.status_code == 302
    assert load_config(path).topics["beauty-tips"].weight == 0.95
    run = CliRunner().invoke(cli, ["--config", str(path), "issue", "weights", "--apply", "nope"])
    assert run.exit_code == 5


def test_rewrite_weight_keeps_the_file_and_adds_a_missing_weight():
    text = '[topics.kp]\nlabel = "KP"\nweight = 2.0   # why\n\n[topics.b]\nlabel = "B"\n'
    assert rewrite_weight(text, "kp", 2.25) == text.replace("2.0   #", "2.25   #")
    assert rewrite_weight(text, "b", 0.5).endswith('[topics.b]\nweight = 0.5\nlabel = "B"\n')
    with pytest.raises(NotFound):
        rewrite_weight(text, "c", 1.0)
