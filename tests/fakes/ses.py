"""A loopback fake of the Amazon SES v2 `SendEmail` call (REST-JSON), enough for boto3:
it records each raw message's recipient and answers with a MessageId, or with the error
SES would send (`x-amzn-ErrorType` header) when told to."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import threading
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeSes:
    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.errors: deque[tuple[int, str]] = deque()  # (status, error type) for the next calls
        self.refuse: dict[str, tuple[int, str]] = {}  # address -> (status, error type)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                to = (body.get("Destination") or {}).get("ToAddresses") or []
                if not to:
                    raw = base64.b64decode(body["Content"]["Raw"]["Data"])
                    to = [str(email.message_from_bytes(raw, policy=email.policy.default)["To"])]
                error = fake.errors.popleft() if fake.errors else fake.refuse.get(to[0])
                if error:
                    status, kind = error
                    return self.answer(status, {"message": f"fake {kind}"}, {"x-amzn-ErrorType": kind})
                fake.accepted += to
                self.answer(200, {"MessageId": uuid.uuid4().hex})

            def answer(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None,
                       ) -> None:
                out = json.dumps(data).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
