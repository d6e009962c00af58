"""Settings: errors name the key; secrets only from the environment; --config / KPDIGEST_CONFIG."""

from __future__ import annotations

import pytest

from core.config import PROJECT_ROOT, load_config
from core.errors import ConfigError
from tests.conftest import write_config


def test_project_config_loads_with_every_section(monkeypatch):
    monkeypatch.delenv("KPDIGEST_DATABASE_URL", raising=False)
    cfg = load_config(PROJECT_ROOT / "config.toml")
    assert cfg.transport.name == "outbox"
    assert {"kp", "beauty-tips"} <= set(cfg.topics)
    assert cfg.database_url.startswith("sqlite:////")  # anchored at the config's folder
    assert len(cfg.feeds) == 3


@pytest.mark.parametrize(("extra", "message"), [
    ('[oops]\nx = 1', "oops: unknown setting"),
])
def test_unknown_section_is_named(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, extra))


@pytest.mark.parametrize(("section", "values", "message"), [
    ("schedule", {"day": "thursday"}, r"schedule.day: 'thursday' is not one of mon"),
    ("schedule", {"time": "25:00"}, r"schedule.time: '25:00' is not HH:MM"),
    ("schedule", {"timezone": "Mars/Olympus"}, r"schedule.timezone: 'Mars/Olympus' is not an IANA zone"),
    ("transport", {"name": "pigeon"}, r"transport.name: 'pigeon' is not one of"),
    ("selection", {"max_items": "twelve"}, r"selection.max_items: expected int, got 'twelve'"),
    ("collect", {"workers": True}, r"collect.workers: expected int, got True"),
    ("site", {"colour": "pink"}, r"site.colour: unknown setting"),
    ("site", {"base_url": "digest.example.com"}, r"site.base_url: .* must start with http"),
])
def test_wrong_setting_names_the_key(tmp_path, section, values, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path), {section: values})


def test_feed_with_unknown_topic_is_named(tmp_path):
    path = write_config(tmp_path, feeds=[("F", "f.xml", ["gardening"])])
    with pytest.raises(ConfigError, match=r"feeds\[0\].topics: unknown topic 'gardening'"):
        load_config(path)


def test_feed_missing_url_is_named(tmp_path):
    path = write_config(tmp_path, '[[feeds]]\nname = "No URL"\n')
    with pytest.raises(ConfigError, match=r"feeds\[0\].url: required setting is missing"):
        load_config(path)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\nname=", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_kpdigest_config_env_picks_the_file(tmp_path, monkeypatch):
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace('name = "The Smooth Skin Digest"', 'name = "Env Digest"', 1))
    monkeypatch.setenv("KPDIGEST_CONFIG", str(path))
    assert load_config().site.name == "Env Digest"


def test_secrets_come_from_the_environment(tmp_path, monkeypatch):
    cfg = load_config(write_config(tmp_path))
    monkeypatch.delenv("KPDIGEST_POSTMARK_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="KPDIGEST_POSTMARK_TOKEN is not set"):
        cfg.secret("postmark_token")
    monkeypatch.setenv("KPDIGEST_POSTMARK_TOKEN", "tok")
    assert cfg.secret("postmark_token") == "tok"


def test_secret_key_is_generated_once_when_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("KPDIGEST_SECRET_KEY", raising=False)
    cfg = load_config(write_config(tmp_path), {"paths": {"var_dir": str(tmp_path / "var")}})
    first = cfg.secret_key
    assert len(first) > 40 and cfg.secret_key == first
    assert (tmp_path / "var" / "secret.key").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("KPDIGEST_SECRET_KEY", "from-env")
    assert cfg.secret_key == "from-env"


def test_database_url_env_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KPDIGEST_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1/db")
    assert load_config(write_config(tmp_path)).database_url == "postgresql+psycopg://u@127.0.0.1/db"
