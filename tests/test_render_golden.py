"""Golden files of the fixed issue: any change to the templates, the rendering or the MIME
layout shows up as a diff here. `make golden` rewrites them after an intended change."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.compose.render import render_confirm
from tests.golden import fixed_issue

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    cfg = fixed_issue.config()
    rendered = fixed_issue.render(cfg)
    variant = fixed_issue.prepared(cfg, rendered)
    message = variant.mime.build(fixed_issue.recipient(), fixed_issue.MESSAGE_DATE)
    _, confirm = render_confirm(cfg, confirm_url="https://digest.example.com/confirm/tok.sig",
                                name="Ann Example")
    return {"digest.html": rendered.html, "digest.txt": rendered.text,
            "digest.eml": message.decode("ascii"), "confirm.txt": confirm}


@pytest.mark.parametrize("name", ["digest.html", "digest.txt", "digest.eml", "confirm.txt"])
def test_matches_golden_file(name: str, outputs: dict[str, str], request: pytest.FixtureRequest) -> None:
    path = GOLDEN / name
    if request.config.getoption("--update-golden"):
        path.write_bytes(outputs[name].encode("utf-8"))
        return
    assert path.exists(), f"{path} is missing: run `make golden`"
    assert outputs[name] == path.read_bytes().decode("utf-8"), f"{name} changed: review, then `make golden`"


def test_rendering_is_deterministic(outputs: dict[str, str]) -> None:
    again = fixed_issue.render()
    assert again.html == outputs["digest.html"] and again.text == outputs["digest.txt"]


def test_text_part_is_wrapped_at_78_columns(outputs: dict[str, str]) -> None:
    long_lines = [line for line in outputs["digest.txt"].splitlines()
                  if len(line) > 78 and "://" not in line]
    assert long_lines == []
