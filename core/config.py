"""Layered settings: defaults < config.toml < KPDIGEST_* environment variables.

Every section is a dataclass so that a typo or a wrong type is reported with the key that
holds it, before anything runs.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import secrets
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.clock import weekly_trigger
from core.errors import ConfigError
from core.transports import TRANSPORTS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config.toml"


@dataclass
class Site:
    name: str = "The Smooth Skin Digest"
    base_url: str = "http://127.0.0.1:8000"
    language: str = "en"
    postal_address: str = ""
    disclaimer: str = ""


@dataclass
class Brand:
    """One look for the email, the public pages and the desk."""

    name: str = ""  # empty: site.name
    logo: str = ""  # an https URL, or a path under web/static (served at /static/...)
    accent: str = "#8a3f4b"  # headings and buttons; text on it is white
    background: str = "#f4efe9"
    font: str = "Arial, Helvetica, sans-serif"


@dataclass
class Sender:
    from_name: str = "The Smooth Skin Digest"
    from_email: str = "digest@example.com"
    reply_to: str = ""
    list_id: str = "weekly.digest.example.com"
    unsubscribe_mailto: str = ""
    feedback_id: str = "kpdigest"

    @property
    def domain(self) -> str:
        return self.from_email.rpartition("@")[2]


@dataclass
class Database:
    url: str = "sqlite:///var/kpdigest.db"


@dataclass
class Paths:
    var_dir: str = "var"
    templates: str = "templates"


@dataclass
class Collect:
    interval_hours: float = 6
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    max_bytes: int = 5_000_000
    workers: int = 32
    per_host: int = 2
    max_failures: int = 5
    user_agent: str = "kpdigest/0.1"
    allow_private_addresses: bool = False
    excerpt_chars: int = 400
    near_duplicate_threshold: float = 0.28
    near_duplicate_days: int = 60
    backoff_minutes: float = 30
    max_redirects: int = 5
    total_timeout: float = 60.0
    parse_processes: int = 2
    fast_parser: bool = True


@dataclass
class FeedConf:
    name: str
    url: str
    topics: list[str] = field(default_factory=list)
    enabled: bool = True


@dataclass
class Topic:
    label: str
    keywords: list[str]
    weight: float = 1.0


@dataclass
class Selection:
    max_items: int = 12
    min_items: int = 3
    per_source: int = 3
    min_score: float = 1.0
    max_age_days: int = 21


@dataclass
class Schedule:
    timezone: str = "UTC"
    day: str = "thu"
    time: str = "08:00"
    misfire_grace_minutes: int = 360
    review: bool = False
    review_deadline_minutes: int = 240
    review_deadline_action: str = "send"
    cron: str = ""
    dispatch_seconds: int = 60
    maintenance_time: str = "03:30"


@dataclass
class Digest:
    subject: str = "{name} #{number}: {headline}"
    intro: str = ""
    max_html_bytes: int = 92160
    summary_chars: int = 320
    max_spam_score: float = 5.0


@dataclass
class Sending:
    batch_size: int = 0
    rate_per_second: float = 0
    rate_per_day: int = 0
    max_in_flight: int = 4
    max_attempts: int = 5
    error_threshold: float = 0.2
    lease_seconds: int = 600
    backoff_seconds: float = 0.5
    lane_share: float = 0.05  # of rate_per_second, reserved for the lane (pipeline/deliver/lane.py)


@dataclass
class Transport:
    """`[transport] name` and one `[transport.<name>]` table per transport in TRANSPORTS."""

    name: str = "outbox"
    tables: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"outbox": {"dir": "var/outbox"}})

    @classmethod
    def from_toml(cls, data: dict[str, Any], prefix: str) -> Transport:
        tables = cls().tables
        for key, value in data.items():
            if key == "name":
                continue
            if key not in TRANSPORTS:
                raise ConfigError(f"{prefix}.{key}: unknown setting")
            tables[key] = _convert(value, dict[str, Any], f"{prefix}.{key}")
        name = _convert(data.get("name", "outbox"), str, f"{prefix}.name")
        return cls(name=name, tables=tables)

    def options(self) -> dict[str, Any]:
        """The chosen transport's own table."""
        return dict(self.tables.get(self.name, {}))


@dataclass
class Web:
    host: str = "127.0.0.1"
    port: int = 8000
    subscribe_rate_per_hour: int = 10
    confirm_expiry_hours: int = 72
    consent_text: str = "Yes, send me the weekly digest."
    consent_version: str = "1"
    trusted_proxies: int = 0
    proxy_address: str = "127.0.0.1"
    import_max_mb: int = 200
    form_max_kb: int = 64


@dataclass
class Webhooks:
    soft_bounce_threshold: int = 3
    retention_days: int = 90
    require_https: bool = True
    max_age_seconds: int = 300
    sns_max_age_seconds: int = 3600
    ses_cert_host: str = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
    ses_topic_arns: list[str] = field(default_factory=list)
    body_max_kb: int = 1024


DKIM_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
DKIM_REQUIRED_HEADERS = ("from", "to", "subject", "date", "message-id", "list-unsubscribe",
                         "list-unsubscribe-post", "list-id", "mime-version", "content-type")
_LABEL_RE = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"


@dataclass
class DkimKey:
    """One selector: its private key comes from a file or an environment variable."""

    selector: str
    algorithm: str = "rsa-sha256"
    key_file: str = ""
    key_env: str = ""


@dataclass
class Dkim:
    enabled: bool = False
    domain: str = ""  # d=; empty: the From address's domain
    timestamp: bool = True  # t= in each signature
    keys: list[DkimKey] = field(default_factory=list)
    headers: list[str] = field(default_factory=lambda: [
        "from", "from", "to", "subject", "subject", "date", "message-id", "reply-to",
        "list-id", "list-unsubscribe", "list-unsubscribe", "list-unsubscribe-post",
        "list-unsubscribe-post", "feedback-id", "mime-version", "content-type",
        "content-language"])


@dataclass
class Doctor:
    nameservers: list[str] = field(default_factory=list)  # empty: the system's resolver
    dns_port: int = 53
    timeout: float = 5.0
    bounce_domain: str = ""  # the envelope (Return-Path) domain; empty: the From domain
    check_before_send: bool = True  # `issue send` refuses a domain the doctor fails


@dataclass
class Reputation:
    window_days: int = 30
    complaint_warn: float = 0.001  # 0.1 %
    complaint_pause: float = 0.003  # 0.3 %: Gmail's line
    hard_bounce_pause: float = 0.02
    min_sent: int = 100  # fewer recipients in the window: rates shown, nothing paused


@dataclass
class Analytics:
    """Privacy-first measurement (docs/measurement.md): aggregate click counts through signed
    redirects; individual clicks only for readers who opted in."""

    enabled: bool = False
    link_max_age_days: int = 400
    buffer_clicks: int = 50_000
    flush_seconds: float = 1.0
    machine_seconds: int = 60
    machine_agents: list[str] = field(default_factory=list)
    machine_networks: list[str] = field(default_factory=list)


@dataclass
class Shared:
    """State shared by several hosts: the scheduler's leader election and an optional Redis
    for the web servers' rate limits (docs/scaling.md)."""

    redis_url: str = ""
    redis_prefix: str = "kpdigest:"
    leader_poll_seconds: float = 5.0


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class Config:
    site: Site = field(default_factory=Site)
    brand: Brand = field(default_factory=Brand)
    sender: Sender = field(default_factory=Sender)
    database: Database = field(default_factory=Database)
    paths: Paths = field(default_factory=Paths)
    collect: Collect = field(default_factory=Collect)
    feeds: list[FeedConf] = field(default_factory=list)
    topics: dict[str, Topic] = field(default_factory=dict)
    selection: Selection = field(default_factory=Selection)
    schedule: Schedule = field(default_factory=Schedule)
    digest: Digest = field(default_factory=Digest)
    sending: Sending = field(default_factory=Sending)
    transport: Transport = field(default_factory=Transport)
    web: Web = field(default_factory=Web)
    webhooks: Webhooks = field(default_factory=Webhooks)
    dkim: Dkim = field(default_factory=Dkim)
    doctor: Doctor = field(default_factory=Doctor)
    reputation: Reputation = field(default_factory=Reputation)
    analytics: Analytics = field(default_factory=Analytics)
    shared: Shared = field(default_factory=Shared)
    base_dir: Path = PROJECT_ROOT
    source: Path | None = None

    def path(self, value: str | os.PathLike[str]) -> Path:
        """Resolve a configured path against the config file's folder."""
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p

    @property
    def var_dir(self) -> Path:
        return self.path(self.paths.var_dir)

    @property
    def templates_dir(self) -> Path:
        return self.path(self.paths.templates)

    @property
    def database_url(self) -> str:
        """The URL with a relative SQLite path anchored at the config folder."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix):]))
        return url

    def secret(self, name: str, required: bool = True) -> str | None:
        """Read KPDIGEST_<NAME> from the environment; secrets never come from the file."""
        var = f"KPDIGEST_{name.upper()}"
        value = os.environ.get(var)
        if not value and required:
            raise ConfigError(f"{var} is not set: the {name.lower()} secret comes from the environment")
        return value or None

    @property
    def secret_key(self) -> str:
        """The signing key: KPDIGEST_SECRET_KEY, else one generated once into var/secret.key."""
        value = os.environ.get("KPDIGEST_SECRET_KEY")
        if value:
            return value
        path = self.var_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        return path.read_text().strip()


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check and convert one TOML value to the annotated type, naming the key on error."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _convert(value, args[0], key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {k: _convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        if hasattr(tp, "from_toml"):  # a section whose keys are not fixed fields
            return tp.from_toml(value, key)
        return _build(typing.cast(type, tp), value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in names or key in ("base_dir", "source"):
            raise ConfigError(f"{full}: unknown setting")
        kwargs[key] = _convert(value, hints[key], full)
    missing = [
        f.name for f in dataclasses.fields(cls)
        if f.init and f.name not in kwargs
        and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{prefix + '.' if prefix else ''}{missing[0]}: required setting is missing")
    return cls(**kwargs)


HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
FONT_STACK = re.compile(r"^[\w ,'\"-]+$")


def _validate_brand(brand: Brand) -> None:
    for key in ("accent", "background"):
        if not HEX_COLOUR.match(getattr(brand, key)):
            raise ConfigError(f"brand.{key}: {getattr(brand, key)!r} is not a colour like #8a3f4b")
    if not FONT_STACK.match(brand.font):
        raise ConfigError(f"brand.font: {brand.font!r} is not a font list like \"Georgia, serif\"")
    if brand.logo and (brand.logo.startswith(("http:", "javascript:", "data:", "//"))
                       or ".." in brand.logo):
        raise ConfigError(f"brand.logo: {brand.logo!r} must be an https URL or a static file name")


def _validate(cfg: Config) -> None:
    _validate_brand(cfg.brand)
    if cfg.transport.name not in TRANSPORTS:
        raise ConfigError(f"transport.name: {cfg.transport.name!r} is not one of {', '.join(TRANSPORTS)}")
    if cfg.schedule.day not in DAYS:
        raise ConfigError(f"schedule.day: {cfg.schedule.day!r} is not one of {', '.join(DAYS)}")
    try:
        ZoneInfo(cfg.schedule.timezone)
    except Exception as exc:  # ZoneInfoNotFoundError, ValueError
        raise ConfigError(f"schedule.timezone: {cfg.schedule.timezone!r} is not an IANA zone") from exc
    for key in ("time", "maintenance_time"):
        hh, _, mm = getattr(cfg.schedule, key).partition(":")
        if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
            raise ConfigError(f"schedule.{key}: {getattr(cfg.schedule, key)!r} is not HH:MM")
    if cfg.schedule.dispatch_seconds < 1:
        raise ConfigError("schedule.dispatch_seconds: must be at least 1")
    if cfg.schedule.cron:
        weekly_trigger(cfg)  # raises ConfigError naming schedule.cron
    if cfg.schedule.review_deadline_action not in ("send", "skip"):
        raise ConfigError("schedule.review_deadline_action: must be 'send' or 'skip'")
    if not cfg.site.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"site.base_url: {cfg.site.base_url!r} must start with http:// or https://")
    if "@" not in cfg.sender.from_email:
        raise ConfigError(f"sender.from_email: {cfg.sender.from_email!r} is not an address")
    if cfg.analytics.buffer_clicks < 1 or cfg.analytics.flush_seconds <= 0:
        raise ConfigError("analytics.buffer_clicks, analytics.flush_seconds: must be positive")
    for i, net in enumerate(cfg.analytics.machine_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as exc:
            raise ConfigError(f"analytics.machine_networks[{i}]: {net!r} is not a CIDR range") from exc
    for i, feed in enumerate(cfg.feeds):
        for t in feed.topics:
            if t not in cfg.topics:
                raise ConfigError(f"feeds[{i}].topics: unknown topic {t!r}")
    if cfg.shared.redis_url and not cfg.shared.redis_url.startswith(("redis://", "rediss://",
                                                                       "unix://")):
        raise ConfigError(f"shared.redis_url: {cfg.shared.redis_url!r} is not a redis:// URL")
    if cfg.shared.leader_poll_seconds <= 0:
        raise ConfigError("shared.leader_poll_seconds: must be more than 0")
    if not 0 < cfg.sending.lane_share <= 1:
        raise ConfigError("sending.lane_share: must be more than 0 and at most 1")
    if cfg.selection.min_items > cfg.selection.max_items:
        raise ConfigError("selection.min_items: larger than selection.max_items")
    _validate_web(cfg)
    _validate_dkim(cfg.dkim)
    _validate_deliverability(cfg)


def _validate_web(cfg: Config) -> None:
    if cfg.web.trusted_proxies < 0:
        raise ConfigError("web.trusted_proxies: must be 0 (no proxy) or more")
    if cfg.web.proxy_address != "*":
        try:
            ipaddress.ip_address(cfg.web.proxy_address)
        except ValueError as exc:
            raise ConfigError(f"web.proxy_address: {cfg.web.proxy_address!r} is not an IP "
                              "address or '*'") from exc
    for key, value in (("web.form_max_kb", cfg.web.form_max_kb),
                       ("webhooks.body_max_kb", cfg.webhooks.body_max_kb),
                       ("web.import_max_mb", cfg.web.import_max_mb)):
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1")
    try:
        re.compile(cfg.webhooks.ses_cert_host)
    except re.error as exc:
        raise ConfigError(f"webhooks.ses_cert_host: not a regular expression ({exc})") from exc


def _validate_dkim(d: Dkim) -> None:
    """Shape only: keys are read when a send starts (ConfigError naming the key then)."""
    if d.domain and not re.fullmatch(rf"(?:{_LABEL_RE}\.)+{_LABEL_RE}", d.domain):
        raise ConfigError(f"dkim.domain: {d.domain!r} is not a domain name")
    if d.enabled and not d.keys:
        raise ConfigError("dkim.keys: DKIM is enabled but no key is configured")
    for i, k in enumerate(d.keys):
        where = f"dkim.keys[{i}]"
        if not re.fullmatch(rf"{_LABEL_RE}(?:\.{_LABEL_RE})*", k.selector):
            raise ConfigError(f"{where}.selector: {k.selector!r} is not a DNS label")
        if k.algorithm not in DKIM_ALGORITHMS:
            raise ConfigError(f"{where}.algorithm: {k.algorithm!r} is not one of "
                              f"{', '.join(DKIM_ALGORITHMS)}")
        if bool(k.key_file) == bool(k.key_env):
            raise ConfigError(f"{where}: set exactly one of key_file and key_env")
    names = [h.lower() for h in d.headers]
    missing = [h for h in DKIM_REQUIRED_HEADERS if h not in names]
    if missing:
        raise ConfigError(f"dkim.headers: must sign {', '.join(missing)}")
    if any(not re.fullmatch(r"[!-9;-~]+", h) for h in names):
        raise ConfigError("dkim.headers: header names are printable ASCII without ':'")


def _validate_deliverability(cfg: Config) -> None:
    doc, rep = cfg.doctor, cfg.reputation
    if not 0 < doc.dns_port < 65536:
        raise ConfigError(f"doctor.dns_port: {doc.dns_port} is not a port")
    if doc.timeout <= 0:
        raise ConfigError("doctor.timeout: must be positive")
    if rep.window_days < 1:
        raise ConfigError("reputation.window_days: must be at least 1")
    for key in ("complaint_warn", "complaint_pause", "hard_bounce_pause"):
        if not 0 < getattr(rep, key) < 1:
            raise ConfigError(f"reputation.{key}: must be a fraction between 0 and 1")
    if rep.complaint_warn > rep.complaint_pause:
        raise ConfigError("reputation.complaint_warn: larger than reputation.complaint_pause")


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: dict[str, Any] | None = None) -> Config:
    """Load settings from PATH, KPDIGEST_CONFIG or the project's config.toml.

    `overrides` is merged over the file section by section (tests and embedding use it).
    """
    chosen = Path(path or os.environ.get("KPDIGEST_CONFIG") or DEFAULT_CONFIG)
    try:
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {chosen}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen}: not valid TOML: {exc}") from exc
    for section, values in (overrides or {}).items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    cfg: Config = _build(Config, data)
    cfg.base_dir = chosen.resolve().parent
    cfg.source = chosen.resolve()
    if os.environ.get("KPDIGEST_DATABASE_URL"):
        cfg.database.url = os.environ["KPDIGEST_DATABASE_URL"]
    _validate(cfg)
    return cfg
