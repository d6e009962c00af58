"""Machine traffic: link scanners, mail proxies and prefetchers are counted apart from
readers.

A click is a machine's when it is a HEAD request, arrives within `machine_seconds` of the
issue starting to send (security gateways open every link of a message as it is
delivered), comes from a configured address range, or carries a user agent that is empty,
in the maintained crawler-user-agents list (PyPI `crawler-user-agents`, about 1,500
patterns), in the mail-scanner list below or in `analytics.machine_agents`.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from functools import lru_cache

import crawleruseragents

from core.config import Analytics

# Link scanners and mail proxies that crawler-user-agents does not carry (lower case
# substrings of the User-Agent header they send).
SCANNERS = (
    "googleimageproxy", "yahoomailproxy", "barracuda", "proofpoint", "mimecast",
    "safelinks", "trendmicro", "symantec", "forcepoint", "fireeye", "cisco ironport",
    "python-requests", "python-urllib", "go-http-client", "curl/", "wget/", "okhttp",
    "headlesschrome", "phantomjs",
)


class Reason:
    HEAD = "head"
    EARLY = "early"
    AGENT = "agent"
    NETWORK = "network"


@lru_cache(maxsize=8192)
def _listed_agent(agent: str, extra: tuple[str, ...]) -> bool:
    low = agent.lower()
    if any(s in low for s in SCANNERS) or any(s in low for s in extra):
        return True
    return bool(crawleruseragents.is_crawler(agent))


class Classifier:
    """Decides, at flush time (never on the reader's request), whose a click was."""

    def __init__(self, cfg: Analytics) -> None:
        self.seconds = cfg.machine_seconds
        self.extra = tuple(a.lower() for a in cfg.machine_agents if a)
        self.networks = [ipaddress.ip_network(n, strict=False) for n in cfg.machine_networks]

    def reason(self, *, head: bool, at: datetime, started: datetime | None, agent: str,
               ip: str) -> str | None:
        """Why the click is a machine's, or None for a reader."""
        if head:
            return Reason.HEAD
        if started is not None and (at - started).total_seconds() < self.seconds:
            return Reason.EARLY
        if self.networks and self._in_networks(ip):
            return Reason.NETWORK
        if not agent.strip() or _listed_agent(agent[:512], self.extra):
            return Reason.AGENT
        return None

    def _in_networks(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in n for n in self.networks)
