"""One registry of transports: settings, the CLI, the docs and the code all follow it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from core import transports as registry
from core.config import PROJECT_ROOT
from core.errors import ConfigError
from core.transports import TRANSPORTS, TransportSpec
from kpdigest.main import main
from pipeline.deliver.transports import get_transport, transport_class

MODULES = PROJECT_ROOT / "pipeline" / "deliver" / "transports"


def _docs_table_names() -> list[str]:
    text = (PROJECT_ROOT / "docs" / "sending.md").read_text(encoding="utf-8")
    section = text.split("## Transports", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z0-9_-]+)`", section, flags=re.M)


def test_every_transport_module_is_registered_under_its_own_name():
    on_disk = {p.stem for p in MODULES.glob("*.py")} - {"__init__", "base", "http"}
    assert on_disk == set(TRANSPORTS)
    for name in TRANSPORTS:
        assert transport_class(name).name == name


def test_the_docs_table_lists_exactly_the_registry_in_its_order():
    assert _docs_table_names() == list(TRANSPORTS)


def test_settings_refuse_a_name_outside_the_registry_and_list_the_registry(make_ctx):
    with pytest.raises(ConfigError) as err:
        make_ctx(transport={"name": "pigeon"})
    assert str(err.value) == (
        f"transport.name: 'pigeon' is not one of {', '.join(TRANSPORTS)}")
    with pytest.raises(ConfigError, match=r"transport.pigeon: unknown setting"):
        make_ctx(transport={"pigeon": {"dir": "x"}})


def test_the_cli_lists_the_registry_and_marks_the_chosen_one(ctx):
    out = CliRunner().invoke(main, ["--config", str(ctx.config.source), "transports"]).output
    lines = out.splitlines()
    assert [line.split()[1] if line.startswith("*") else line.split()[0] for line in lines] \
        == list(TRANSPORTS)
    assert lines[0].startswith("* outbox")
    assert "[KPDIGEST_POSTMARK_TOKEN]" in out


def test_adding_a_transport_is_one_module_and_one_registry_line(make_ctx, tmp_path: Path,
                                                                monkeypatch):
    pigeon = TransportSpec("pigeon", "carrier pigeons", where="tests.fakes.pigeon")
    monkeypatch.setitem(registry.TRANSPORTS, "pigeon", pigeon)
    ctx = make_ctx(transport={"name": "pigeon", "pigeon": {"dir": str(tmp_path / "loft")}})
    transport = get_transport(ctx.config)
    assert transport.name == "pigeon"
    assert ctx.config.transport.options() == {"dir": str(tmp_path / "loft")}
    out = CliRunner().invoke(main, ["--config", str(ctx.config.source), "transports"]).output
    assert "pigeon" in out and "carrier pigeons" in out
