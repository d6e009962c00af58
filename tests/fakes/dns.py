"""A loopback authoritative DNS server (dnslib) serving fixture zones over UDP and TCP.

Tests publish records with `add` and point dnspython (the doctor's resolver, dkimpy's
key lookup) at 127.0.0.1:`port`; nothing reaches the internet. Names that hold no
record of any type answer NXDOMAIN, names that hold other types NOERROR with no data,
as a real authoritative server does. Long TXT values (DKIM keys) are split into
255-byte strings and go over TCP when they do not fit a UDP answer.
"""

from __future__ import annotations

import socket
import threading
from collections import defaultdict
from typing import Any

import dns.exception
import dns.resolver
from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

_RDATA = {"A": A, "AAAA": AAAA, "CNAME": CNAME, "PTR": PTR}


class Zones(BaseResolver):
    """Every fixture record, by (name, type)."""

    def __init__(self) -> None:
        self.records: dict[DNSLabel, list[RR]] = defaultdict(list)
        self.queries: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, name: str, rtype: str, value: Any, ttl: int = 300) -> None:
        """`add("example.com", "MX", (10, "mx.example.com"))`, TXT as a str."""
        rtype = rtype.upper()
        if rtype == "TXT":
            data = value.encode() if isinstance(value, str) else value
            rdata: Any = TXT([data[i : i + 255] for i in range(0, len(data), 255)] or [b""])
        elif rtype == "MX":
            rdata = MX(value[1], value[0])
        else:
            rdata = _RDATA[rtype](value)
        with self.lock:
            self.records[DNSLabel(name)].append(
                RR(name, getattr(QTYPE, rtype), rdata=rdata, ttl=ttl)
            )

    def clear(self) -> None:
        with self.lock:
            self.records.clear()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        reply.header.aa = 1
        q = request.q
        qtype = QTYPE[q.qtype]
        with self.lock:
            self.queries.append((str(q.qname).rstrip("."), qtype))
            rrs = list(self.records.get(q.qname, []))
        if not rrs:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rr in rrs:
            if rr.rtype == q.qtype or (rr.rtype == QTYPE.CNAME and q.qtype != QTYPE.CNAME):
                reply.add_answer(rr)
        return reply


class FakeDns:
    """UDP and TCP on one loopback port."""

    def __init__(self) -> None:
        self.zones = Zones()
        logger = DNSLogger("-request,-reply,-truncated,-error", prefix=False)
        for _ in range(20):
            self.port = _free_port()
            try:
                self.udp = DNSServer(self.zones, port=self.port, address="127.0.0.1", logger=logger)
                self.tcp = DNSServer(
                    self.zones, port=self.port, address="127.0.0.1", tcp=True, logger=logger
                )
                break
            except OSError:
                continue
        else:  # pragma: no cover - twenty taken ports in a row
            raise RuntimeError("no free port for the fake DNS server")
        self.udp.start_thread()
        self.tcp.start_thread()

    def add(self, name: str, rtype: str, value: Any, ttl: int = 300) -> None:
        self.zones.add(name, rtype, value, ttl)

    def resolver(self, timeout: float = 5.0) -> dns.resolver.Resolver:
        """A dnspython resolver that asks only this server."""
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = self.port
        r.timeout = r.lifetime = timeout
        r.cache = None
        return r

    def dkimpy_dnsfunc(self) -> Any:
        """dkimpy's `dnsfunc`: the TXT record at a name, from this server."""
        resolver = self.resolver()

        def txt(name: bytes | str, timeout: float = 5) -> bytes:
            qname = name.decode() if isinstance(name, bytes) else name
            try:
                answer = resolver.resolve(qname.rstrip("."), "TXT", tcp=True)
            except dns.exception.DNSException:
                return b""
            for rr in answer:
                return b"".join(rr.strings)
            return b""

        return txt

    def stop(self) -> None:
        self.udp.stop()
        self.tcp.stop()
        self.udp.server.server_close()
        self.tcp.server.server_close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
