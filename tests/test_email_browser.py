"""The digest in headless Chromium (Debian's `chromium`, driven by Playwright): no
horizontal scrolling on a 375 px phone, the 600 px column on a desktop, alt text on every
image, and readable colours in dark mode. Screenshots go to the test's tmp folder.

No network: every request the page makes is answered here (images with a generated PNG).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from tests.golden import fixed_issue

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _png(width: int, height: int, rgb: tuple[int, int, int] = (217, 184, 168)) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))



@pytest.fixture(scope="module")
def digest_html() -> str:
    return fixed_issue.prepared().html_for(fixed_issue.recipient())


def _open(browser, html: str, width: int, scheme: str = "light"):
    image = _png(1072, 600)
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page.route("**/*", lambda route: route.fulfill(body=image, content_type="image/png")
               if route.request.resource_type == "image" else route.abort())
    page.set_content(html, wait_until="load")
    return page


@pytest.mark.parametrize("width", [375, 600])
def test_layout_fits_and_images_have_alt(browser, digest_html, width, tmp_path: Path):
    page = _open(browser, digest_html, width)
    try:
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width, f"horizontal scrolling at {width}px ({scroll_width}px wide)"
        images = page.evaluate("""[...document.images].map(i => ({alt: i.getAttribute('alt'),
            width: i.getAttribute('width'), shown: i.getBoundingClientRect().width,
            loaded: i.naturalWidth}))""")
        assert len(images) == 4
        for img in images:
            assert (img["alt"] or "").strip() and img["width"] == "536" and img["loaded"] > 0
            assert img["shown"] <= width
        column = page.evaluate("document.querySelector('table.container').getBoundingClientRect().width")
        assert column <= 600 and (width < 600 or column >= 580)
        page.screenshot(path=str(tmp_path / f"digest-{width}.png"), full_page=True)
        assert (tmp_path / f"digest-{width}.png").stat().st_size > 10_000
    finally:
        page.close()


def test_dark_mode_keeps_text_readable(browser, digest_html):
    page = _open(browser, digest_html, 375, scheme="dark")
    try:
        colours = page.evaluate("""(() => {
            const c = s => getComputedStyle(document.querySelector(s));
            return {bg: c('table.container').backgroundColor, text: c('.summary').color,
                    title: c('.article-title a').color, footer: c('.footer').color,
                    footerBg: c('.footer').backgroundColor};
        })()""")
    finally:
        page.close()

    def luminance(css: str) -> float:
        r, g, b = (int(x) / 255 for x in css[css.index("(") + 1:css.index(")")].split(",")[:3])
        lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    def contrast(a: str, b: str) -> float:
        hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
        return (hi + 0.05) / (lo + 0.05)

    assert luminance(colours["bg"]) < 0.05  # dark background, not the light one
    for key in ("text", "title"):
        assert contrast(colours[key], colours["bg"]) >= 4.5, colours
    assert contrast(colours["footer"], colours["footerBg"]) >= 4.5, colours
