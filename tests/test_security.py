"""Security of the web app: tokens, CSRF, roles, XSS, SQL metacharacters, cookies."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, select

from core.models import queue_items, subscribers, subscriptions, users
from pipeline.curate.queue import add_markdown
from subscribers.csvio import import_csv
from subscribers.store import add_subscriber
from subscribers.tokens import make_token
from tests.test_web_helpers import PASSWORD, csrf, login_as, make_app

SECRET = "test-secret-key"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
SQL = "'; DROP TABLE subscribers; -- \" OR 1=1 %_\\"


@pytest.fixture
def app(ctx):
    return make_app(ctx)


@pytest.fixture
def client(app):
    return app.test_client()


def _status(ctx, sid):
    with ctx.engine.connect() as conn:
        return conn.execute(select(subscriptions.c.status)
                            .where(subscriptions.c.subscriber_id == sid)).scalar()


def test_forged_and_cross_purpose_tokens(ctx, client):
    sid = add_subscriber(ctx, "victim@example.com")
    prefs = make_token(SECRET, "preferences", sid)
    confirm = make_token(SECRET, "confirm", sid)
    other_key = make_token("another-secret", "unsubscribe", sid)
    raw = URLSafeTimedSerializer(SECRET).dumps(sid)  # right key, no purpose salt
    for token in (prefs, confirm, other_key, raw, prefs[:-2] + "xx"):
        assert client.post(f"/unsubscribe/{token}").status_code == 400
        assert client.get(f"/export/{token}").status_code == 400
    assert client.get(f"/preferences/{make_token(SECRET, 'unsubscribe', sid)}").status_code == 400
    assert _status(ctx, sid) == "active"
    good = make_token(SECRET, "unsubscribe", sid)
    assert client.post(f"/unsubscribe/{good}").status_code == 200 and _status(ctx, sid) == "unsubscribed"


def _post_rules(app):
    exempt = {"public.unsubscribe_token", "webhooks.receive"}
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods and rule.endpoint not in exempt:
            values = {a: ("1" if a in ("sid", "item_id", "number") else "approve" if a == "action"
                          else "x") for a in rule.arguments}
            yield rule, _build(rule, values)


def _build(rule, values):
    path = rule.rule
    for name, value in values.items():
        path = path.replace(f"<int:{name}>", value).replace(f"<{name}>", value)
    return path


def test_every_form_needs_the_csrf_token(ctx, app, client):
    login_as(client, ctx, "admin")
    sid = add_subscriber(ctx, "keep@example.com")
    csrf(client, "/desk/")  # the session has a token; the requests below just do not send it
    checked = 0
    for rule, path in _post_rules(app):
        resp = client.post(path.replace("/1/", f"/{sid}/") if "subscribers" in path else path,
                           data={"email": "keep@example.com", "csrf_token": "forged"})
        assert resp.status_code == 400, (rule.rule, resp.status_code)
        checked += 1
    assert checked >= 15
    assert _status(ctx, sid) == "active"
    with ctx.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(subscribers)).scalar_one() == 1


def test_desk_needs_login_and_admin_pages_need_the_admin_role(ctx, app, client):
    gets = [r.rule for r in app.url_map.iter_rules()
            if r.rule.startswith("/desk") and "GET" in r.methods and not r.arguments]
    assert "/desk/subscribers" in gets and "/desk/queue" in gets
    for path in gets:
        resp = client.get(path)
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login"), path
    login_as(client, ctx, "editor")
    admin_only = [p for p in gets
                  if p.split("/")[2] not in ("", "queue", "preview", "articles", "compose")]
    for path in admin_only:
        assert client.get(path).status_code == 403, path
    token = csrf(client, "/desk/queue")
    sid = add_subscriber(ctx, "x@example.com")
    assert client.post(f"/desk/subscribers/{sid}/erase", data={"csrf_token": token}).status_code == 403
    assert client.post("/desk/issues/1/pause", data={"csrf_token": token}).status_code == 403
    assert _status(ctx, sid) == "active"
    for path in ("/desk/", "/desk/queue"):
        assert client.get(path).status_code == 200


def test_xss_in_names_and_article_fields_is_escaped(ctx, client):
    sid = add_subscriber(ctx, "xss@example.com", XSS)
    add_markdown(ctx, XSS, f"Body {XSS} with [a link](javascript:alert(1))", approve=True)
    import_csv(ctx, f"email,name\n{XSS}@x.com,{XSS.replace(',', ' ')}\n".encode())
    login_as(client, ctx, "admin")
    pages = [client.get(f"/desk/subscribers/{sid}"), client.get("/desk/subscribers?q=xss"),
             client.get("/desk/queue"), client.get(f"/preferences/{make_token(SECRET, 'preferences', sid)}")]
    for resp in pages:
        html = resp.get_data(as_text=True)
        assert resp.status_code == 200
        assert "<script>alert" not in html and "<img src=x" not in html, resp.request.path
        assert "&lt;script&gt;" in html
        assert "script-src" not in resp.headers["Content-Security-Policy"]  # no inline script allowed
    preview = client.get("/desk/preview").get_data(as_text=True)
    assert "<script>alert" not in preview and "<img src=x" not in preview
    assert 'href="javascript:' not in preview


def test_sql_metacharacters_are_plain_text(ctx, client):
    sid = add_subscriber(ctx, "o'brien@example.com", SQL)
    add_subscriber(ctx, "plain@example.com", "Plain")
    login_as(client, ctx, "admin")
    for term in (SQL, "'", "%", "_", "\\", "' OR '1'='1"):
        page = client.get("/desk/subscribers", query_string={"q": term}).get_data(as_text=True)
        assert "plain@example.com" not in page, term
    assert "o&#39;brien@example.com" in client.get("/desk/subscribers?q=o'b").get_data(as_text=True)
    assert client.get("/desk/suppressions", query_string={"q": SQL}).status_code == 200
    with ctx.engine.connect() as conn:
        assert conn.execute(select(subscribers.c.name).where(subscribers.c.id == sid)).scalar() == SQL
    fresh = make_app(ctx).test_client()
    resp = fresh.post("/login", data={"email": "' OR '1'='1", "password": "' OR '1'='1",
                                      "csrf_token": csrf(fresh, "/login")})
    assert resp.status_code == 401
    token = csrf(client, "/desk/queue")
    client.post("/desk/queue/add-tip", data={"title": SQL, "body": SQL, "csrf_token": token})
    client.post("/desk/lists", data={"slug": "x'; --", "name": SQL, "csrf_token": token})
    client.post("/manage", data={"email": SQL, "csrf_token": token})
    client.post("/subscribe", data={"email": SQL, "name": SQL, "consent": "yes", "csrf_token": token})
    with ctx.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(subscribers)).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(queue_items)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(users)).scalar_one() == 1


def test_session_cookie_flags_and_headers(ctx, client):
    from core.accounts import add_user

    add_user(ctx, "a@example.com", PASSWORD, "admin")
    resp = client.post("/login", data={"email": "a@example.com", "password": PASSWORD,
                                       "csrf_token": csrf(client, "/login")})
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    page = client.get("/")
    assert page.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in \
        page.headers["Content-Security-Policy"]
    with ctx.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
