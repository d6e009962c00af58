"""Topic weights from "more / less like this": applied only when an editor approves.

The weights live in `config.toml` (`[topics.<slug>] weight`), the settings' one source of
truth, so approval rewrites that one line (comments and layout kept, the file replaced
atomically, the result loaded and validated before it stays) and records who approved
what from which votes. New articles are scored with the new weight from the next
collection on; scores already stored are not recomputed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy import insert

from core.config import load_config
from core.context import Context
from core.db import utcnow
from core.errors import ConfigError, InvalidInput, NotFound
from core.models import events
from pipeline.measure.report import Suggestion, weight_suggestions

_WEIGHT_RE = re.compile(r"^(\s*weight\s*=\s*)([0-9.eE+-]+)(.*)$")


def rewrite_weight(text: str, topic: str, weight: float) -> str:
    """The TOML text with `[topics.<topic>]`'s weight set (added when missing)."""
    lines = text.splitlines(keepends=True)
    header = re.compile(rf"^\s*\[\s*topics\.(\"{re.escape(topic)}\"|{re.escape(topic)})\s*\]")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        raise NotFound(f"config file has no [topics.{topic}] table")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
               len(lines))
    for i in range(start + 1, end):
        m = _WEIGHT_RE.match(lines[i].rstrip("\n"))
        if m:
            lines[i] = f"{m.group(1)}{weight:g}{m.group(3)}\n"
            return "".join(lines)
    lines.insert(start + 1, f"weight = {weight:g}\n")
    return "".join(lines)


def apply_suggestion(ctx: Context, topic: str, approved_by: str, last: int = 4) -> Suggestion:
    """Set `topic`'s weight to what the votes suggest now; returns the suggestion applied."""
    chosen = next((s for s in weight_suggestions(ctx, last) if s.topic == topic), None)
    if chosen is None:
        raise InvalidInput(f"no votes suggest a weight for topic {topic!r}")
    path = ctx.config.source
    if path is None:
        raise ConfigError("the settings were not loaded from a file: nothing to change")
    original = Path(path).read_text(encoding="utf-8")
    _replace(path, rewrite_weight(original, topic, chosen.suggested))
    try:
        load_config(path)
    except ConfigError:
        _replace(path, original)
        raise
    ctx.config.topics[topic].weight = chosen.suggested
    with ctx.engine.begin() as conn:
        conn.execute(insert(events).values(
            subscriber_id=None, kind="topic_weight", actor=approved_by, created_at=utcnow(),
            detail={"topic": topic, "from": chosen.current, "to": chosen.suggested,
                    "more": chosen.more, "less": chosen.less}))
    return chosen


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
