"""`make demo` on embedded defaults, in a temporary folder, twice."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT

pytestmark = pytest.mark.slow


def _demo_config(tmp_path: Path) -> Path:
    text = (PROJECT_ROOT / "config.toml").read_text(encoding="utf-8")
    text = text.replace('url = "sample/', f'url = "{PROJECT_ROOT}/sample/')
    text = text.replace('templates = "templates"', f'templates = "{PROJECT_ROOT / "templates"}"')
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _make_demo(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPDIGEST_")}
    env["KPDIGEST_CONFIG"] = str(config)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return subprocess.run(
        [shutil.which("make") or "make", "-s", "-C", str(PROJECT_ROOT), "demo",
         f"VENV={Path(sys.executable).parent.parent}"],
        env=env, capture_output=True, text=True, timeout=300, check=False)


def test_make_demo_runs_twice_offline_in_a_temp_dir(tmp_path):
    if not (Path(sys.executable).parent.parent / ".installed").exists():
        pytest.skip("make demo's steps need the project venv made by `make`")
    config = _demo_config(tmp_path)
    first = _make_demo(tmp_path, config)
    assert first.returncode == 0, first.stdout + first.stderr
    outbox = tmp_path / "var" / "outbox"
    emls = sorted(outbox.glob("*.eml"))
    assert len(emls) == 5  # sample/subscribers.csv
    preview = (tmp_path / "var" / "preview.html").read_text(encoding="utf-8")
    assert "the two-minute KP habit" in preview and "Bumpy Skin Journal" in preview
    assert "issue #1" in first.stdout

    second = _make_demo(tmp_path, config)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already exists" in second.stderr + second.stdout
    assert sorted(outbox.glob("*.eml")) == emls
