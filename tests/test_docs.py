"""Docs kept honest: the README documents every command the CLI has (and no other), and
config.toml lists every setting the code knows, each with a comment."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing

import click

from core import config as config_module
from core.config import PROJECT_ROOT
from kpdigest.main import main

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
CONFIG_TEXT = (PROJECT_ROOT / "config.toml").read_text(encoding="utf-8")


def _leaf_commands(group: click.Group, prefix: str = "kpdigest") -> set[str]:
    out: set[str] = set()
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out |= _leaf_commands(cmd, f"{prefix} {name}")
        else:
            out.add(f"{prefix} {name}")
    return out


def _walk(group: click.Group, words: list[str], path: list[str]) -> tuple[click.Group, list[str]]:
    """Follow words down the click tree while they name subcommands."""
    for word in words:
        cmd = group.commands.get(word)
        if cmd is None:
            break
        path = [*path, word]
        if not isinstance(cmd, click.Group):
            return group, path
        group = cmd
    return group, path


def _readme_commands() -> set[str]:
    """Commands named in the README's command table: `kpdigest a b`, and `/ c` alternatives
    that continue the same group (e.g. `kpdigest queue list` / `approve`)."""
    found: set[str] = set()
    rows = [re.split(r"(?<!\\)\|", line)[1] for line in README.splitlines()
            if line.startswith("| `kpdigest ")]
    for row in rows:
        base: list[str] = []
        for span in re.findall(r"`([^`]+)`", row):
            words = span.split()
            if words[0] == "kpdigest":
                _group, path = _walk(main, words[1:], ["kpdigest"])
                is_group = len(path) > 1 and isinstance(main.commands[path[1]], click.Group)
                base = ["kpdigest", path[1]] if is_group else ["kpdigest"]
                found.add(" ".join(path))
            elif len(base) > 1:
                words = words[1:] if words[0] == base[1] else words
                _g, path = _walk(main.commands[base[1]], words, base)  # type: ignore[arg-type]
                if len(path) > len(base):
                    found.add(" ".join(path))
    return found


def test_readme_lists_every_cli_command():
    cli = _leaf_commands(main)
    documented = _readme_commands()
    assert cli - documented == set(), "commands missing from README's table"
    assert documented <= cli | {"kpdigest"}, "README names commands the CLI does not have"


def _fields(cls: type, prefix: str) -> set[str]:
    out: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name in ("base_dir", "source"):
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and prefix == "":
            out |= _fields(tp, f.name)
        elif prefix:
            out.add(f"{prefix}.{f.name}")
    return out


def test_config_toml_names_every_setting_with_a_comment():
    data = tomllib.loads(CONFIG_TEXT)
    known = _fields(config_module.Config, "")
    listed = {f"{section}.{key}" for section, values in data.items() if isinstance(values, dict)
              for key in values if not isinstance(values[key], dict)}
    sections_with_free_keys = {"transport", "topics"}
    expected = {k for k in known if k.split(".")[0] not in sections_with_free_keys}
    assert expected - listed == set(), "settings the code knows but config.toml does not list"
    table = ""
    uncommented = []
    lines = CONFIG_TEXT.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("["):
            table = line.strip()
            continue
        # Repeated tables ([[feeds]], [topics.x]) are explained once, above the first one.
        if not re.match(r"^[a-z_]+\s*=", line) or table.startswith(("[[feeds]]", "[topics.")):
            continue
        block = []
        for prev in reversed(lines[:i]):
            if not prev.strip() or prev.startswith("["):
                break
            block.append(prev)
        if not ("#" in line or any(p.lstrip().startswith("#") for p in block)):
            uncommented.append(f"line {i + 1}: {line}")
    assert uncommented == [], "config.toml settings without a comment"
