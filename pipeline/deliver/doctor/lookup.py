"""DNS look-ups for the doctor through dnspython, with the resolver `[doctor]` names (tests
point it at a loopback authoritative server, so nothing reaches the internet).

Answers are three-way: records, "no such name" and "name exists, no record of this type"
are told apart, and a server that does not answer is an error the doctor reports as such
(never as a missing record).
"""

from __future__ import annotations

import ipaddress

import dns.exception
import dns.name
import dns.resolver
import dns.reversename

from core.config import Config


class DnsUnavailable(Exception):
    """The DNS server did not answer (timeout, SERVFAIL): nothing can be concluded."""


class Dns:
    def __init__(self, cfg: Config, resolver: dns.resolver.Resolver | None = None) -> None:
        if resolver is None:
            doc = cfg.doctor
            resolver = dns.resolver.Resolver(configure=not doc.nameservers)
            if doc.nameservers:
                resolver.nameservers = list(doc.nameservers)
            resolver.port = doc.dns_port
            resolver.timeout = resolver.lifetime = doc.timeout
        self.resolver = resolver

    def _query(self, name: str, rtype: str) -> list[str] | None:
        """Record texts; None when the name does not exist; [] when it has none of this type."""
        try:
            answer = self.resolver.resolve(name, rtype, tcp=rtype == "TXT", search=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.NoAnswer:
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DnsUnavailable(f"DNS lookup of {rtype} {name} failed: {exc}") from exc
        except dns.name.LabelTooLong as exc:
            raise DnsUnavailable(f"{name} is not a valid DNS name: {exc}") from exc
        if rtype == "TXT":
            return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
        if rtype == "MX":
            return [f"{r.preference} {str(r.exchange).rstrip('.')}" for r in answer]
        return [r.to_text().rstrip(".") for r in answer]

    def txt(self, name: str) -> list[str] | None:
        return self._query(name, "TXT")

    def addresses(self, name: str) -> list[str]:
        """A and AAAA records of a name (an address literal is its own answer)."""
        try:
            return [str(ipaddress.ip_address(name))]
        except ValueError:
            pass
        found: list[str] = []
        for rtype in ("A", "AAAA"):
            found += self._query(name, rtype) or []
        return found

    def mx(self, name: str) -> list[tuple[int, str]] | None:
        rows = self._query(name, "MX")
        if rows is None:
            return None
        pairs = [(int(p), h) for p, _, h in (r.partition(" ") for r in rows)]
        return sorted(pairs)

    def ptr(self, address: str) -> list[str] | None:
        return self._query(str(dns.reversename.from_address(address)).rstrip("."), "PTR")

    def exists(self, name: str) -> bool:
        """Whether the name has any record (NXDOMAIN or not)."""
        return self._query(name, "TXT") is not None


def tags(record: str) -> dict[str, str]:
    """A tag=value list (DKIM keys, DMARC): lower-case tags, values stripped."""
    out: dict[str, str] = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out.setdefault(
                key.strip().lower(), "".join(value.split()) if key.strip() == "p" else value.strip()
            )
    return out
