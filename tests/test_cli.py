"""The CLI is a thin shell: library errors become one line on stderr and a distinct exit code."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kpdigest.main import main
from tests.conftest import write_config


@pytest.fixture
def run(tmp_path, db_url, monkeypatch):
    monkeypatch.setenv("KPDIGEST_DATABASE_URL", db_url)
    monkeypatch.setenv("KPDIGEST_SECRET_KEY", "k")
    config = write_config(tmp_path)

    def invoke(*args: str):
        return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)

    return invoke


def test_commands_before_init_say_what_to_do(run):
    result = run("issue", "status")
    assert result.exit_code == 4
    assert "run `kpdigest init` first" in result.stderr


def test_init_twice_and_errors_have_their_exit_codes(run, tmp_path):
    assert run("init").exit_code == 0
    assert run("init").exit_code == 0
    missing = run("issue", "send", "99")
    assert (missing.exit_code, missing.stderr.strip()) == (3, "Error: no issue #99")
    bad = run("subscribers", "add", "not-an-address")
    assert bad.exit_code == 5 and "invalid email address 'not-an-address'" in bad.stderr
    ok = run("subscribers", "add", "Ann@Example.COM", "--name", "Ann")
    assert ok.exit_code == 0
    listed = run("subscribers", "list")
    assert "ann@example.com" in listed.stdout and "active" in listed.stdout
    assert run("subscribers", "remove", "ann@example.com").exit_code == 0
    again = run("subscribers", "add", "ann@example.com")
    assert again.exit_code == 4 and "suppressed (unsubscribed)" in again.stderr


def test_import_reports_bad_rows_by_line_and_keeps_good_ones(run, tmp_path):
    run("init")
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("email;name\nann@example.com;Ann\nnot-an-email;Bad\nbo@example.org;Bo\n",
                        encoding="utf-8")
    result = run("subscribers", "import", str(csv_file))
    assert result.exit_code == 0
    assert "line 3: invalid email address 'not-an-email'" in result.stderr
    assert "2 added, 0 unchanged, 1 rejected" in result.stdout
    again = run("subscribers", "import", str(csv_file))
    assert "0 added, 2 unchanged, 1 rejected" in again.stdout


def test_wrong_config_is_exit_2_naming_the_key(tmp_path):
    bad = write_config(tmp_path, "[schedule_typo]\nday = 1\n")
    proc = subprocess.run([sys.executable, "-m", "kpdigest", "--config", str(bad), "init"],
                          capture_output=True, text=True, env={**os.environ}, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "Error: schedule_typo: unknown setting"
