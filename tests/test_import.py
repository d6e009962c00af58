"""CSV import: dialects and encodings, per-line errors, idempotence, suppression, lists."""

from __future__ import annotations

import csv
import io

import pytest
from click.testing import CliRunner
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, insert, select

from core.addresses import normalize_fast
from core.db import utcnow
from core.errors import InvalidInput
from core.models import events, lists, subscribers, subscriptions, suppressions
from kpdigest.main import main
from subscribers.csvio import export_csv, import_csv
from subscribers.store import suppress


def _count(ctx, table) -> int:
    with ctx.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _state(ctx) -> list[tuple]:
    with ctx.engine.connect() as conn:
        return conn.execute(select(subscribers.c.email, subscribers.c.name, subscriptions.c.status,
                                   subscriptions.c.topics, subscriptions.c.consent_source)
                            .join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id)
                            .order_by(subscribers.c.email, subscriptions.c.list_id)).all()


SEMICOLON_BOM = (
    "\ufeffE-Mail;Name;Topics;Consent Source;Favourite\r\n"
    "Ann@Example.COM;\"Ann; the first\";kp;fair 2026;tea\r\n"
    "bad-address;Nobody;;;\r\n"
    "bob@example.org;\"Bob \"\"B\"\" Smith\";kp, beauty-tips;;\r\n"
    "cy@example.net;Cy;sports;;\r\n"
    "ann@example.com;Ann again;;;\r\n"
    "dee@exämple.de;\"Dee\non two lines\";;;\r\n"
    "eve@example.com;Eve;;;\r\n"
)


def test_semicolon_bom_quoted_fields_and_errors_by_line(ctx):
    report = import_csv(ctx, SEMICOLON_BOM.encode("utf-8"), source_name="fair.csv")
    assert (report.rows, report.added, report.unchanged) == (7, 4, 1)
    assert [line for line, _ in report.errors] == [3, 5]
    assert "bad-address" in report.errors[0][1] and "unknown topic 'sports'" in report.errors[1][1]
    rows = {r.email: r for r in _state(ctx)}
    assert rows["ann@example.com"].name == "Ann; the first" and rows["ann@example.com"].topics == "kp"
    assert rows["ann@example.com"].consent_source == "fair 2026"
    assert rows["bob@example.org"].name == 'Bob "B" Smith'
    assert rows["bob@example.org"].topics == "beauty-tips,kp"
    assert rows["dee@exämple.de"].name == "Dee\non two lines"
    assert rows["eve@example.com"].consent_source == "import:fair.csv"
    assert rows["eve@example.com"].status == "active"
    with ctx.engine.connect() as conn:
        attrs = conn.execute(select(subscribers.c.attributes)
                             .where(subscribers.c.email == "ann@example.com")).scalar()
    assert attrs == {"favourite": "tea"}
    assert _count(ctx, events) == 4


@pytest.mark.parametrize("encoding", ["utf-16", "cp1252", "utf-8"])
def test_encodings_and_comma_dialect(ctx, encoding):
    text = 'email,name\r\n"zoe@example.com","Zoë Ångström"\r\nyan@example.com,Yan\r\n'
    report = import_csv(ctx, text.encode(encoding))
    assert report.added == 2 and not report.errors
    assert {r.name for r in _state(ctx)} == {"Zoë Ångström", "Yan"}


def test_reimport_changes_nothing_and_suppressed_stay_suppressed(ctx):
    with ctx.engine.begin() as conn:
        suppress(conn, "eve@example.com", "complained")
    first = import_csv(ctx, SEMICOLON_BOM.encode())
    assert first.suppressed == 1 and first.added == 3
    before = (_state(ctx), _count(ctx, events), _count(ctx, subscribers))
    again = import_csv(ctx, SEMICOLON_BOM.encode())
    assert (again.added, again.unchanged, again.suppressed) == (0, 4, 1)
    assert (_state(ctx), _count(ctx, events), _count(ctx, subscribers)) == before
    assert "eve@example.com" not in {r.email for r in _state(ctx)}


def test_lists_column_and_unknown_list(ctx):
    with ctx.engine.begin() as conn:
        conn.execute(insert(lists).values(slug="monthly", name="Monthly", description="", public=True,
                                          double_optin=True, created_at=utcnow()))
    text = "email,lists\nm1@example.com,monthly|weekly\nm2@example.com,\nm3@example.com,nope\n"
    report = import_csv(ctx, text.encode())
    assert report.added == 2 and report.errors == [(4, "unknown list 'nope'")]
    assert [r.email for r in _state(ctx)] == ["m1@example.com", "m1@example.com", "m2@example.com"]
    with pytest.raises(InvalidInput, match="no email column"):
        import_csv(ctx, b"name,phone\nAnn,123\n")


def test_unsubscribed_people_are_not_resubscribed(ctx):
    import_csv(ctx, b"email\nleft@example.com\n")
    from subscribers.store import unsubscribe

    with ctx.engine.connect() as conn:
        sid = conn.execute(select(subscribers.c.id)).scalar()
    unsubscribe(ctx, sid, list_slug="weekly")
    again = import_csv(ctx, b"email\nleft@example.com\n")
    assert again.unchanged == 1 and _state(ctx)[0].status == "unsubscribed"


def test_fast_normalisation_agrees_with_email_validator():
    samples = ["A.B@Example.COM", "x@localhost", "a..b@ex.com", "a@ex..com", "a@-ex.com", "a@ex.test",
               "a@123.45", "user+tag@sub.example.co.uk", "o'neil@example.ie", "a@ex", ".a@ex.com",
               "ü@ex.com", "a@exämple.com", "x" * 65 + "@ex.com", "a@" + "b" * 64 + ".com", "a b@ex.com",
               "a@ex.invalid", "{weird}@example.com", "a@example.com."]
    for raw in samples:
        try:
            expected = validate_email(raw, check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            expected = None
        try:
            got = normalize_fast(raw)
        except InvalidInput:
            got = None
        assert got == expected, raw


def test_cli_import_and_export(ctx, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("email,name\nok@example.com,=HYPERLINK(\"x\")\nnope,No\n", encoding="utf-8")
    runner = CliRunner()
    cfg = str(ctx.config.source)
    result = runner.invoke(main, ["--config", cfg, "subscribers", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 added, 0 unchanged, 1 rejected, 0 suppressed" in result.stdout
    assert "line 3:" in result.stderr
    out = io.StringIO()
    assert export_csv(ctx, out) == 1
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[1][:3] == ["ok@example.com", "'=HYPERLINK(\"x\")", "active"]  # formula defused
    only_bad = tmp_path / "bad.csv"
    only_bad.write_text("email\nnope\n", encoding="utf-8")
    assert runner.invoke(main, ["--config", cfg, "subscribers", "import", str(only_bad)]).exit_code == 5
    assert _count(ctx, suppressions) == 0
