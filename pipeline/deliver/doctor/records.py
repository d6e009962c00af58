"""Reading the sender's DNS records the way a receiver does: SPF (RFC 7208, evaluated for
an address, with the 10-look-up limit), DKIM key records (RFC 6376) and DMARC policy
discovery by the RFC 9989 tree walk."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from pipeline.deliver.doctor.lookup import Dns, tags

SPF_LOOKUP_LIMIT = 10
DMARC_POLICIES = ("none", "quarantine", "reject")
DMARC_GONE_TAGS = ("pct", "rf", "ri")  # removed by RFC 9989


@dataclass
class Spf:
    domain: str
    record: str | None = None
    result: str = "none"  # pass | fail | softfail | neutral | none | permerror (for `address`)
    includes: set[str] = field(default_factory=set)  # every include: in the tree
    lookups: int = 0
    errors: list[str] = field(default_factory=list)
    all_qualifier: str = ""


def spf_record(dns: Dns, domain: str) -> tuple[str | None, str | None]:
    """(the v=spf1 record, why there is no usable one)."""
    texts = dns.txt(domain)
    if texts is None:
        return None, f"{domain} does not exist in DNS"
    found = [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
    if not found:
        return None, f'{domain} publishes no SPF record (TXT "v=spf1 ...")'
    if len(found) > 1:
        return (
            None,
            f"{domain} publishes {len(found)} SPF records; receivers treat that as an error",
        )
    return found[0], None


def evaluate_spf(dns: Dns, domain: str, address: str | None = None) -> Spf:
    """The SPF result for `address` sending as `domain` (without one: only the tree)."""
    spf = Spf(domain)
    spf.record, why = spf_record(dns, domain)
    if spf.record is None:
        spf.errors.append(why or "no SPF record")
        return spf
    ip = ipaddress.ip_address(address) if address else None
    spf.result = _eval(dns, domain, spf.record, ip, spf, top=True)
    if spf.lookups > SPF_LOOKUP_LIMIT:
        spf.errors.append(
            f"the SPF record needs {spf.lookups} DNS look-ups; receivers stop at "
            f"{SPF_LOOKUP_LIMIT} (permerror)"
        )
        spf.result = "permerror"
    return spf


_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}


def _eval(
    dns: Dns,
    domain: str,
    record: str,
    ip: ipaddress._BaseAddress | None,
    spf: Spf,
    top: bool = False,
    depth: int = 0,
) -> str:
    result: str | None = None
    redirect = None
    for term in record.split()[1:]:
        if "=" in term and ":" not in term.split("=", 1)[0]:
            name, _, value = term.partition("=")
            if name.lower() == "redirect":
                redirect = value
            continue
        qual = _QUALIFIERS.get(term[0], "")
        mech = term[1:] if qual else term
        qual = qual or "pass"
        kind, _, arg = mech.partition(":")
        kind = kind.lower().split("/")[0]
        if kind == "all":
            if top:
                spf.all_qualifier = qual
            if result is None:
                result = qual
            continue
        matched = _mechanism(dns, kind, arg or domain, domain, mech, ip, spf, depth)
        if matched and result is None and ip is not None:
            result = qual
    if redirect and not any(t.lower().lstrip("+-~?") == "all" for t in record.split()):
        spf.lookups += 1
        target, why = spf_record(dns, redirect)
        if target is None:
            spf.errors.append(f"redirect={redirect}: {why} (permerror)")
            return "permerror"
        return _eval(dns, redirect, target, ip, spf, top=top, depth=depth + 1)
    return result or "neutral"


def _mechanism(
    dns: Dns,
    kind: str,
    target: str,
    domain: str,
    mech: str,
    ip: ipaddress._BaseAddress | None,
    spf: Spf,
    depth: int,
) -> bool:
    """Whether one mechanism matches `ip`; counts look-ups and collects includes."""
    if kind == "include":
        spf.lookups += 1
        spf.includes.add(target.lower())
        record, why = spf_record(dns, target)
        if record is None:
            spf.errors.append(f"include:{target}: {why} (permerror)")
            return False
        if depth > SPF_LOOKUP_LIMIT:
            return False
        return _eval(dns, target, record, ip, spf, depth=depth + 1) == "pass" and ip is not None
    if kind in ("ip4", "ip6"):
        return ip is not None and _in_network(ip, mech.partition(":")[2])
    if kind in ("a", "mx"):
        spf.lookups += 1
        spec = mech.partition(":")[2] if ":" in mech else domain + mech[len(kind) :]
        name, _, cidr = spec.partition("/")
        hosts = [h for _, h in (dns.mx(name) or [])] if kind == "mx" else [name]
        if ip is None:
            return False
        return any(
            _in_network(ip, f"{a}/{cidr}" if cidr else a) for h in hosts for a in dns.addresses(h)
        )
    if kind in ("exists", "ptr"):
        spf.lookups += 1
    return False


def _in_network(ip: ipaddress._BaseAddress, network: str) -> bool:
    try:
        return ip in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


# --- DKIM ----------------------------------------------------------------------------------


def dkim_key_record(dns: Dns, selector: str, domain: str) -> tuple[dict[str, str] | None, str]:
    """The key record's tags at `<selector>._domainkey.<domain>`, or None and why not."""
    name = f"{selector}._domainkey.{domain}"
    texts = dns.txt(name)
    if not texts:
        return None, f"no DKIM key record at {name}"
    records = [tags(t) for t in texts if "p=" in t]
    if len(records) != 1:
        return None, f"{name} has {len(records)} key records (need exactly one)"
    return records[0], name


# --- DMARC (RFC 9989) -----------------------------------------------------------------------


@dataclass
class Dmarc:
    author_domain: str
    found_at: str | None = None  # the domain whose _dmarc record applies
    record: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def policy(self) -> str:
        """The policy for the author domain: p=, or sp= (np=) when inherited from a parent."""
        if self.found_at and self.found_at != self.author_domain:
            return self.tags.get("sp") or self.tags.get("p", "")
        return self.tags.get("p", "")


def walk_names(domain: str) -> list[str]:
    """The names the RFC 9989 tree walk queries: the domain, then (past eight labels)
    its seven right-most labels, then one label fewer each step, down to the TLD."""
    labels = domain.rstrip(".").lower().split(".")
    names = [".".join(labels)]
    start = len(labels) - 7 if len(labels) > 8 else 1
    names += [".".join(labels[i:]) for i in range(start, len(labels))]
    return names


def discover_dmarc(dns: Dns, domain: str) -> Dmarc:
    out = Dmarc(domain)
    for name in walk_names(domain):
        texts = dns.txt(f"_dmarc.{name}") or []
        found = [t for t in texts if t.replace(" ", "").startswith("v=DMARC1")]
        if len(found) > 1:
            out.errors.append(
                f"_dmarc.{name} publishes {len(found)} DMARC records; receivers ignore them all"
            )
            return out
        if found:
            out.found_at, out.record, out.tags = name, found[0], tags(found[0])
            break
    else:
        return out
    if out.tags.get("p", "") not in DMARC_POLICIES:
        out.errors.append(
            f"_dmarc.{out.found_at}: p={out.tags.get('p', '')!r} is not one of "
            f"{', '.join(DMARC_POLICIES)}"
        )
    return out


def aligned(identifier: str, author: str, mode: str, org: str | None) -> bool:
    """DMARC identifier alignment: strict is the same name; relaxed the same organisational
    domain (here: one under the other, or both under the domain holding the DMARC record)."""
    a, b = identifier.lower().rstrip("."), author.lower().rstrip(".")
    if a == b:
        return True
    if mode == "s":
        return False
    if a.endswith("." + b) or b.endswith("." + a):
        return True
    return bool(org) and a.endswith("." + org) and b.endswith("." + org) and "." in org
