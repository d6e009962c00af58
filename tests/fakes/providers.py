"""A fake mail provider on 127.0.0.1 that records every accepted recipient.

It speaks the wire format of Postmark, SendGrid, Mailgun or Resend closely enough for our
transports, and follows each provider's documented behaviour where the tests need it:
429 with the provider's own retry signal, 500/503, a batch where some messages fail
(Postmark), timeouts and connection resets after the provider accepted, and Resend's
idempotency keys (a repeated key returns the first answer without sending again).

Faults are scripted per request: `fake.script.append(Fault("429", retry_after=1))`.
Run it as a process for benchmarks and crash tests:
`python -m tests.fakes.providers --kind postmark --latency 0.02` prints its port.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from email.utils import parseaddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

KINDS = ("postmark", "sendgrid", "mailgun", "resend")


@dataclass
class Fault:
    kind: str  # 429 | 500 | 503 | 400 | 401 | unverified | timeout | reset | partial
    retry_after: float = 1.0
    hold: float = 2.0  # timeout: seconds to stay silent after accepting
    codes: dict[str, int] = field(default_factory=dict)  # partial: email -> Postmark ErrorCode


def parse_form(body: bytes, ctype: str) -> dict[str, list[str]]:
    """A form body, urlencoded or multipart/form-data, as name -> values."""
    if not ctype.startswith("multipart/form-data"):
        return parse_qs(body.decode(), keep_blank_values=True)
    boundary = ctype.split("boundary=", 1)[1].strip('"').encode()
    form: dict[str, list[str]] = {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, value = part[2:-2].partition(b"\r\n\r\n")  # framed by CRLF on both sides
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        form.setdefault(name, []).append(value.decode("utf-8"))
    return form


class FakeProvider:
    def __init__(self, kind: str, latency: float = 0.0, fast: bool = False,
                 log: Path | None = None) -> None:
        assert kind in KINDS, kind
        self.kind, self.latency, self.fast, self.log = kind, latency, fast, log
        self.script: deque[Fault] = deque()
        self.accepted: list[str] = []
        self.delivered: list[dict[str, str]] = []  # email, delivery_id, tag: for searches
        self.requests: list[dict[str, Any]] = []
        self.idempotency: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.lock = threading.Lock()
        self.calls = 0
        self.active = 0
        self.batch_path = True
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The headers and the body go out in two writes: with Nagle's algorithm the
            # body waited for the client's delayed ACK, 40 ms on every answer.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                fake.search(self)

            def do_POST(self) -> None:
                with fake.lock:
                    fake.active += 1
                try:
                    fake.handle(self)
                finally:
                    with fake.lock:
                        fake.active -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *_a: None  # a client killed mid-request is expected
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until no request is being handled (a killed client's last one may still be)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if not self.active:
                    return
            time.sleep(0.01)
        raise TimeoutError("fake provider still busy")

    def reset_log(self) -> None:
        with self.lock:
            self.accepted.clear()
            self.requests.clear()
            self.calls = 0

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(self.accepted)

    # --- parsing each provider's request -----------------------------------------

    def recipients(self, path: str, body: bytes, ctype: str) -> list[str]:
        if self.fast:
            needle = {"postmark": b'"MessageStream"', "resend": b'"tags"', "sendgrid": b'"custom_args"',
                      "mailgun": b'name="to"'}[self.kind]
            return [""] * (body.count(needle) or 1)
        if self.kind == "mailgun":
            return [parseaddr(t)[1] for t in parse_form(body, ctype).get("to", [])]
        data = json.loads(body)
        if self.kind == "sendgrid":
            return [p["to"][0]["email"] for p in data["personalizations"]]
        if self.kind == "postmark":
            data = data if isinstance(data, list) else [data]
            return [parseaddr(m["To"])[1] for m in data]
        data = data if isinstance(data, list) else [data]
        return [parseaddr(m["to"][0] if isinstance(m["to"], list) else m["to"])[1] for m in data]

    def success(self, emails: list[str], fault: Fault | None) -> tuple[int, dict[str, str], bytes]:
        """The provider's 2xx answer; with a `partial` fault some Postmark messages fail."""
        if self.kind == "postmark":
            codes = fault.codes if fault and fault.kind == "partial" else {}
            out = []
            for e in emails:
                code = codes.get(e, 0)
                out.append({"ErrorCode": code, "Message": "OK" if not code else f"fake error {code}",
                            "MessageID": str(uuid.uuid4()) if not code else "", "To": e,
                            "SubmittedAt": "2026-11-27T08:00:00Z"})
            single = out[0] if len(out) == 1 and not self.batch_path else out
            return 200, {"Content-Type": "application/json"}, json.dumps(single).encode()
        if self.kind == "sendgrid":
            return 202, {"X-Message-Id": uuid.uuid4().hex}, b""
        if self.kind == "mailgun":
            body = {"id": f"<{uuid.uuid4().hex}@fake.mailgun>", "message": "Queued. Thank you."}
            return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
        body = {"data": [{"id": str(uuid.uuid4())} for _ in emails]}
        if not self.batch_path:  # POST /emails: one message, answered with its id
            body = {"id": body["data"][0]["id"]}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def refusal(self, fault: Fault) -> tuple[int, dict[str, str], bytes]:
        if fault.kind == "429":
            ra = fault.retry_after
            if self.kind == "sendgrid":
                reset = {"X-RateLimit-Reset": str(int(time.time() + ra))}
                return 429, reset, b'{"errors":[{"message":"too many"}]}'
            if self.kind == "mailgun":
                msg = f"Domain is not allowed to send: rate limit exceeded, try again after {ra:g} seconds"
                return 429, {"Content-Type": "application/json"}, json.dumps({"message": msg}).encode()
            if self.kind == "resend":
                return 429, {"retry-after": f"{ra:g}"}, b'{"name":"rate_limit_exceeded"}'
            return 429, {}, b'{"ErrorCode":429,"Message":"Rate limit exceeded"}'
        if fault.kind in ("401", "unverified"):
            return self.account_refusal(fault.kind)
        if fault.kind == "400":
            status = 422 if self.kind in ("postmark", "resend") else 400
            return status, {"Content-Type": "application/json"}, b'{"message":"fake error","ErrorCode":300}'
        return int(fault.kind), {}, b"fake server error"

    def account_refusal(self, kind: str) -> tuple[int, dict[str, str], bytes]:
        """Each provider's documented answer to a bad key (401) or a sender domain or
        identity that is not verified."""
        bad_key = {
            "postmark": (401, {"ErrorCode": 10, "Message": "The Server Token you provided in "
                               "the X-Postmark-Server-Token request header was invalid."}),
            "sendgrid": (401, {"errors": [{"message": "The provided authorization grant is "
                                           "invalid, expired, or revoked"}]}),
            "mailgun": (401, {"message": "Invalid private key"}),
            "resend": (401, {"statusCode": 401, "name": "validation_error",
                             "message": "API key is invalid"})}
        unverified = {
            "postmark": (422, {"ErrorCode": 400, "Message": "The 'From' address you supplied is "
                               "not a Sender Signature on your account."}),
            "sendgrid": (403, {"errors": [{"message": "The from address does not match a "
                                           "verified Sender Identity."}]}),
            "mailgun": (403, {"message": "Domain example.com is not verified"}),
            "resend": (403, {"statusCode": 403, "name": "validation_error",
                             "message": "The example.com domain is not verified."})}
        status, body = (bad_key if kind == "401" else unverified)[self.kind]
        return status, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def details(self, body: bytes, headers: Any) -> list[dict[str, str]]:
        """What a provider's search API reports of each accepted message."""
        if self.kind == "postmark":
            sent = json.loads(body)  # /email/batch: a list; /email: one message
            return [{"email": parseaddr(m["To"])[1], "tag": m.get("Tag", ""),
                     "delivery_id": str((m.get("Metadata") or {}).get("delivery_id", "")),
                     "id": str(uuid.uuid4())} for m in (sent if isinstance(sent, list) else [sent])]
        if self.kind == "mailgun":
            form = parse_form(body, headers.get("Content-Type", ""))
            rv = json.loads(form.get("recipient-variables", ["{}"])[0])
            tag = form.get("o:tag", [""])[0]
            return [{"email": parseaddr(t)[1], "tag": tag, "id": str(uuid.uuid4()),
                     "delivery_id": str(rv.get(parseaddr(t)[1], {}).get("delivery_id", ""))}
                    for t in form.get("to", [])]
        return []

    def search(self, h: BaseHTTPRequestHandler) -> None:
        """Postmark's outbound message search and Mailgun's events API, filtered by
        recipient and tag as the real ones are."""
        url = urlsplit(h.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.lock:
            self.calls += 1
            self.requests.append({"path": h.path, "headers": dict(h.headers), "size": 0,
                                  "body": b""})
            hits = [m for m in self.delivered if m["email"] == q.get("recipient")
                    and m["tag"] == q.get("tag", q.get("tags"))]
        if self.kind == "postmark" and url.path == "/messages/outbound":
            body = {"TotalCount": len(hits), "Messages": [
                {"MessageID": m["id"], "Recipients": [m["email"]], "Tag": m["tag"],
                 "Metadata": {"delivery_id": m["delivery_id"]}, "Status": "Sent"}
                for m in hits]}
        elif self.kind == "mailgun" and url.path.endswith("/events"):
            body = {"items": [{"event": "accepted", "recipient": m["email"], "tags": [m["tag"]],
                               "user-variables": {"delivery_id": m["delivery_id"]},
                               "message": {"headers": {"message-id": m["id"]}}}
                              for m in hits], "paging": {}}
        else:
            return self.reply(h, 404, {}, b"not found")
        self.reply(h, 200, {"Content-Type": "application/json"}, json.dumps(body).encode())

    # --- one request ---------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        with self.lock:
            self.calls += 1
            fault = self.script.popleft() if self.script else None
            self.requests.append({"path": h.path, "headers": dict(h.headers), "size": len(body),
                                  "body": b"" if self.fast else body})
        if self.latency:
            time.sleep(self.latency)
        if fault and fault.kind in ("429", "500", "503", "400", "401", "unverified"):
            return self.reply(h, *self.refusal(fault))
        key = h.headers.get("Idempotency-Key") if self.kind == "resend" else None
        with self.lock:
            if key and key in self.idempotency:
                answer = self.idempotency[key]
            else:
                emails = self.recipients(h.path, body, h.headers.get("Content-Type", ""))
                # Postmark's /email and Resend's /emails take one message and answer an object.
                self.batch_path = h.path not in ("/email", "/emails")
                answer = self.success(emails, fault)
                failed = set(fault.codes) if fault and fault.kind == "partial" else set()
                accepted = [e for e in emails if e not in failed]
                self.accepted += accepted
                if not self.fast:
                    self.delivered += [m for m in self.details(body, h.headers)
                                       if m["email"] not in failed]
                if self.log:
                    with self.log.open("a") as fh:
                        fh.write("".join(e + "\n" for e in accepted))
                if key:
                    self.idempotency[key] = answer
        if fault and fault.kind == "timeout":
            time.sleep(fault.hold)
            return self.reset(h)
        if fault and fault.kind == "reset":
            return self.reset(h)
        self.reply(h, *answer)

    @staticmethod
    def reply(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    @staticmethod
    def reset(h: BaseHTTPRequestHandler) -> None:
        """Drop the connection with a TCP RST and no answer."""
        h.close_connection = True
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        except OSError:
            pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kind", choices=KINDS, required=True)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--fast", action="store_true", help="count recipients without parsing bodies")
    ap.add_argument("--log", type=Path, help="append every accepted address to this file")
    args = ap.parse_args(argv)
    fake = FakeProvider(args.kind, args.latency, args.fast, args.log)
    print(fake.httpd.server_address[1], flush=True)
    try:
        while sys.stdin.read(1):
            pass
    finally:
        fake.close()


if __name__ == "__main__":
    main()
