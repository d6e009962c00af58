"""Every error path of the command line is one line on stderr with its own exit code, and
bad input is refused at the edge before anything is stored."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kpdigest.main import main
from tests.conftest import write_config
from tests.feedgen import rss

USAGE, DATABASE, INVALID = 64, 11, 5


@pytest.fixture
def run(tmp_path, db_url, monkeypatch):
    monkeypatch.setenv("KPDIGEST_DATABASE_URL", db_url)
    monkeypatch.setenv("KPDIGEST_SECRET_KEY", "k")
    config = write_config(tmp_path)

    def invoke(*args: str):
        return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)

    invoke("init")
    return invoke


def one_line(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def _proc(tmp_path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    config = write_config(tmp_path)
    env = {**os.environ, "KPDIGEST_DATABASE_URL": database_url, "KPDIGEST_SECRET_KEY": "k"}
    return subprocess.run([sys.executable, "-m", "kpdigest", "--config", str(config), *args],
                          capture_output=True, text=True, env=env, check=False, timeout=120)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("url", "words"), [
    ("mysql://x/y", "the mysql driver is not installed"),
    ("nosuch://x", "database_url: Can't load plugin"),
    ("not a url", "database_url: Could not parse"),
    (None, "cannot connect to the database"),
])
def test_database_url_problems_are_one_line(tmp_path, url, words):
    url = url or f"postgresql://postgres@127.0.0.1:{_closed_port()}/db"
    proc = _proc(tmp_path, url, "issue", "status")
    assert proc.returncode == DATABASE, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: ")
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_usage_errors_are_one_line_with_their_own_code(run):
    line = one_line(run("issue", "send"), USAGE)
    assert "Missing argument 'NUMBER'" in line and "issue send --help" in line
    assert "No such option '--bogus'" in one_line(run("issue", "status", "--bogus"), USAGE)
    assert "No such command" in one_line(run("isue"), USAGE)


def test_period_must_be_an_iso_week(run):
    for bad in ("banana", "2026-W54", "2025-W53", "2026-48"):
        line = one_line(run("issue", "build", "--period", bad), INVALID)
        assert "expected an ISO week such as 2026-W48" in line
    assert "no issues yet" in run("issue", "list").stdout  # nothing was recorded


def test_subscriber_topics_must_exist(run):
    line = one_line(run("subscribers", "add", "ann@example.com", "--topic", "nosuchtopic"),
                    INVALID)
    assert "unknown topic 'nosuchtopic' (known: " in line
    assert "no subscribers yet" in run("subscribers", "list").stdout


def test_queue_positions_start_at_1(run):
    line = one_line(run("queue", "move", "4", "0"), USAGE)
    assert "0 is not in the range x>=1" in line


def test_empty_lists_say_so(run):
    assert "no open items in the queue" in run("queue", "list").stdout
    assert "the queue is empty" in run("queue", "list", "--all").stdout
    assert "no issues yet" in run("issue", "list").stdout


def test_cancel_without_yes_changes_nothing_and_says_so(run):
    result = CliRunner().invoke(main, ["issue", "cancel", "1"], input="n\n")
    assert result.exit_code == 1 and "Aborted: nothing was changed" in result.stderr


def test_feeds_add_checks_the_url_and_fetches_it_once(run, feed_server, tmp_path):
    line = one_line(run("feeds", "add", "not-a-url"), INVALID)
    assert "not an http(s) URL, nor a file here: 'not-a-url'" in line
    assert "not an http(s) URL" in one_line(run("feeds", "add", "ftp://x/feed"), INVALID)
    feed_server.serve_bytes("/gone", b"no", "text/plain", status=404)
    assert "HTTP 404" in one_line(run("feeds", "add", feed_server.url("/gone")), INVALID)
    feed_server.serve_bytes("/page", b"<html><body><p>hello</p></body></html>", "text/html")
    line = one_line(run("feeds", "add", feed_server.url("/page")), INVALID)
    assert "not a readable feed (text/html" in line and "--no-check" in line
    feed_server.serve_bytes("/feed", rss("Kitchen", [{"title": "One", "link": "https://x.example/1"}]))
    ok = run("feeds", "add", feed_server.url("/feed"))
    assert ok.exit_code == 0 and "(a feed: 'Kitchen', 1 entry)" in ok.stdout
    unchecked = run("feeds", "add", feed_server.url("/page"), "--no-check")
    assert unchecked.exit_code == 0
    listed = run("feeds", "list").stdout
    assert feed_server.url("/feed") in listed and "not-a-url" not in listed


def test_each_collect_error_is_printed_once(run, feed_server):
    feed_server.serve_bytes("/gone", b"no", "text/plain", status=404)
    run("feeds", "add", feed_server.url("/gone"), "--no-check")
    result = run("collect")
    out = result.stdout + result.stderr
    assert out.count("HTTP 404") == 1, out
    assert "0 new articles from 1 feed, 1 failed" in result.stdout
