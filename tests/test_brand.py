"""One look: config.toml's [brand] reaches the email, the public pages and the desk."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from pipeline.compose.issues import preview_next
from pipeline.curate.queue import add_markdown
from tests.test_web_helpers import make_app


def test_the_brand_colours_font_and_name_reach_email_and_web(make_ctx):
    ctx = make_ctx(brand={"name": "Bumps Weekly", "accent": "#123456", "background": "#fafafa",
                          "font": "'Segoe UI', Verdana, sans-serif"})
    add_markdown(ctx, "A tip on urea", "Urea.", approve=True)
    html, _sel = preview_next(ctx)
    assert "Bumps Weekly" in html and "#123456" in html and "#8a3f4b" not in html
    assert 'font-family:"Segoe UI", Verdana, sans-serif' in html  # premailer's quotes, not &#39;
    client = make_app(ctx).test_client()
    css = client.get("/brand.css").get_data(as_text=True)
    assert "--accent: #123456" in css and "--bg: #fafafa" in css and "'Segoe UI'" in css
    home = client.get("/").get_data(as_text=True)
    assert "Bumps Weekly" in home and "/brand.css" in home


@pytest.mark.parametrize(("key", "value", "message"), [
    ("accent", "red; } body { display:none", "brand.accent"),
    ("font", "Arial; } * { color: red", "brand.font"),
    ("logo", "javascript:alert(1)", "brand.logo"),
])
def test_a_brand_value_that_could_break_out_of_css_is_refused(make_ctx, key, value, message):
    with pytest.raises(ConfigError, match=message):
        make_ctx(brand={key: value})
