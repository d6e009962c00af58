"""DKIM signing (RFC 6376) with OpenSSL through `cryptography`: rsa-sha256 and
ed25519-sha256 (RFC 8463), relaxed/relaxed.

Every recipient's message differs (its unsubscribe link, its greeting), so each needs its
own signature; dkimpy signs in pure Python at 39-65 messages/s. Here the MIME template of
an issue variant is canonicalised once (`VariantSigner`): static headers become their
canonical lines, the body's literal stretches their canonical bytes, and the SHA-256 state
after the first literal is kept. Per recipient only the few slot values are canonicalised,
the body hash is continued from that state, and one private-key operation signs.

A message that does not come from a template (a confirmation email) takes `sign_bytes`,
which canonicalises the whole message.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from core.config import Config, DkimKey
from core.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.compose.message import MessageTemplate

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
CRLF = b"\r\n"
_WSP = re.compile(rb"[ \t]+")
_FOLD = re.compile(rb"\r\n(?=[ \t])")
_HEADER_END = re.compile(rb"\r\n\r\n")
# The b= value of a DKIM-Signature header, for the copy that is hashed (RFC 6376 3.7).
B64_LINE = 72


# --- canonicalisation (RFC 6376 3.4.2 and 3.4.4) -------------------------------------------


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """`name:value` + CRLF: name lower-cased, value unfolded, whitespace runs as one space."""
    value = _WSP.sub(b" ", _FOLD.sub(b"", value)).strip(b" \t\r\n")
    return name.strip().lower() + b":" + value + CRLF


def relaxed_body_piece(data: bytes) -> bytes:
    """Whitespace runs become one space, whitespace at a line's end goes; the trailing
    empty lines of the whole body are `relaxed_body`'s business."""
    return _WSP.sub(b" ", data).replace(b" \r\n", b"\r\n")


def relaxed_body(body: bytes) -> bytes:
    """The canonical body: empty lines at its end removed, one CRLF kept when non-empty."""
    body = relaxed_body_piece(body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    if body and not body.endswith(CRLF):
        body += CRLF
    return body


def split_headers(head: bytes) -> list[tuple[bytes, bytes]]:
    """(name, raw value) of each header field of a header block, folding kept."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(CRLF):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + CRLF + line)
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError(f"not a header line: {line[:60]!r}")
        fields.append((name, value))
    return fields


def select_headers(fields: Sequence[tuple[bytes, Any]], names: Sequence[str]) -> list[int | None]:
    """For each name of h=, the index of the last instance not chosen yet (None: absent,
    which signs the header's absence: over-signing)."""
    used: set[int] = set()
    out: list[int | None] = []
    for wanted in names:
        pick = None
        for i in range(len(fields) - 1, -1, -1):
            if i not in used and fields[i][0].strip().lower() == wanted.encode():
                pick = i
                break
        if pick is not None:
            used.add(pick)
        out.append(pick)
    return out


# --- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """One selector's private key."""

    selector: str
    algorithm: str
    private: Any  # rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    def sign(self, data: bytes) -> bytes:
        if self.algorithm == "rsa-sha256":
            digest = hashlib.sha256(data).digest()
            return self.private.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        # RFC 8463: Ed25519 (pure) over the SHA-256 hash of the canonicalised headers.
        return self.private.sign(hashlib.sha256(data).digest())

    @property
    def public_record(self) -> str:
        """The TXT record to publish at `<selector>._domainkey.<domain>`."""
        pub = self.private.public_key()
        if self.algorithm == "rsa-sha256":
            der = pub.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"

    @property
    def public_b64(self) -> str:
        return self.public_record.rpartition("p=")[2]


def parse_private_key(data: bytes, algorithm: str, where: str) -> Any:
    """A PEM key (PKCS#1 or PKCS#8), or for Ed25519 also dkimpy's base64 32-byte seed."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raw = _b64_seed(data)
        if algorithm != "ed25519-sha256" or raw is None:
            raise ConfigError(
                f"{where}: not a readable unencrypted PEM private key ({exc})"
            ) from exc
        key = ed25519.Ed25519PrivateKey.from_private_bytes(raw)
    if algorithm == "rsa-sha256":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(f"{where}: rsa-sha256 needs an RSA key, got {type(key).__name__}")
        if key.key_size < 1024:
            raise ConfigError(
                f"{where}: RSA key of {key.key_size} bits; receivers need 1024+ (2048 recommended)"
            )
    elif not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{where}: ed25519-sha256 needs an Ed25519 key, got {type(key).__name__}")
    return key


def _b64_seed(data: bytes) -> bytes | None:
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def load_key(cfg: Config, index: int, conf: DkimKey) -> SigningKey:
    """Read one configured key from its file or its environment variable."""
    where = f"dkim.keys[{index}]"
    if conf.key_env:
        value = os.environ.get(conf.key_env, "")
        if not value:
            raise ConfigError(f"{where}.key_env: {conf.key_env} is not set")
        data = value.replace("\\n", "\n").encode()
    else:
        path = cfg.path(conf.key_file)
        try:
            data = _read(path, path.stat().st_mtime_ns)
        except OSError as exc:
            raise ConfigError(
                f"{where}.key_file: cannot read {path}: {exc.strerror or exc}"
            ) from exc
    return SigningKey(conf.selector, conf.algorithm, parse_private_key(data, conf.algorithm, where))


@lru_cache(maxsize=16)
def _read(path: Path, _mtime: int) -> bytes:
    return path.read_bytes()


def generate_key(algorithm: str) -> bytes:
    """A new private key as PKCS#8 PEM (RSA: 2048 bits)."""
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "rsa-sha256"
        else ed25519.Ed25519PrivateKey.generate()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# --- signing ---------------------------------------------------------------------------------


class Signer:
    """The configured keys and signing policy (one instance per send)."""

    def __init__(self, cfg: Config, keys: list[SigningKey] | None = None) -> None:
        d = cfg.dkim
        self.domain = d.domain or cfg.sender.domain
        self.headers = [h.lower() for h in d.headers]
        self.timestamp = d.timestamp
        self.keys = (
            keys if keys is not None else [load_key(cfg, i, k) for i, k in enumerate(d.keys)]
        )
        if not self.keys:
            raise ConfigError("dkim.keys: DKIM is enabled but no key is configured")

    def _tags(self, key: SigningKey, body_hash: bytes) -> bytes:
        tags = [f"v=1; a={key.algorithm}; c=relaxed/relaxed; d={self.domain}; s={key.selector};"]
        if self.timestamp:
            tags.append(f" t={int(time.time())};")
        tags.append(f"\r\n h={':'.join(self.headers)};")
        tags.append(f"\r\n bh={base64.b64encode(body_hash).decode()};\r\n b=")
        return "".join(tags).encode()

    def signature_headers(self, signed: bytes, body_hash: bytes) -> bytes:
        """One DKIM-Signature field per key over the canonical headers `signed`."""
        out: list[bytes] = []
        for key in self.keys:
            value = self._tags(key, body_hash)
            sig = key.sign(signed + relaxed_header(b"DKIM-Signature", value)[:-2])
            b64 = base64.b64encode(sig)
            folded = b"\r\n ".join(b64[i : i + B64_LINE] for i in range(0, len(b64), B64_LINE))
            out.append(b"DKIM-Signature: " + value + folded + CRLF)
        return b"".join(out)

    def sign_bytes(self, message: bytes) -> bytes:
        """Sign a complete CRLF message (no template): canonicalises all of it."""
        m = _HEADER_END.search(message)
        if m is None:
            raise ValueError("message has no header/body separator")
        fields = split_headers(message[: m.start() + 2])
        body_hash = hashlib.sha256(relaxed_body(message[m.end() :])).digest()
        signed = b"".join(
            relaxed_header(*fields[i])
            for i in select_headers(fields, self.headers)
            if i is not None
        )
        return self.signature_headers(signed, body_hash) + message

    def for_template(self, template: MessageTemplate) -> VariantSigner:
        return VariantSigner(self, template)


class VariantSigner:
    """One MIME template canonicalised once; `sign(parts)` signs one recipient's message.

    `parts` is `MessageTemplate.build_parts`: literals at even indices, slot values at
    odd ones. Body slots are quoted-printable values framed by soft line breaks, so each
    starts a line and is followed by `=`: canonicalising the literals and the values
    separately gives the canonical body. A template where that does not hold is signed
    with the whole-message path (checked here, once).
    """

    def __init__(self, signer: Signer, template: MessageTemplate) -> None:
        self.signer = signer
        literals = template.literals
        marked = b"".join(
            lit + (b"" if i == len(literals) - 1 else b"\x00%d\x00" % i)
            for i, lit in enumerate(literals)
        )
        m = _HEADER_END.search(marked)
        if m is None:
            raise ValueError("template has no header/body separator")
        self._headers(marked[: m.start() + 2])
        self._body(marked[m.end() :])

    def _headers(self, head: bytes) -> None:
        fields = split_headers(head)
        # Each signed field: its canonical line, or (name, value with slot markers) to finish.
        self.header_plan: list[bytes | tuple[bytes, list[bytes | int]]] = []
        for i in select_headers(fields, self.signer.headers):
            if i is None:
                continue
            name, value = fields[i]
            pieces = _split_markers(value)
            if all(isinstance(p, bytes) for p in pieces):
                self.header_plan.append(relaxed_header(name, value))
            else:
                self.header_plan.append((name, pieces))

    def _body(self, body: bytes) -> None:
        pieces = _split_markers(body)
        self.exact = True
        for k, p in enumerate(pieces):
            if isinstance(p, int):
                before, after = pieces[k - 1], pieces[k + 1]
                assert isinstance(before, bytes) and isinstance(after, bytes)
                if not before.endswith(CRLF) or after[:1] in (b" ", b"\t", b"\r", b""):
                    self.exact = False
        last = pieces[-1]
        assert isinstance(last, bytes)
        canon: list[bytes | int] = [
            relaxed_body_piece(p) if isinstance(p, bytes) else p for p in pieces[:-1]
        ]
        canon.append(relaxed_body(last))
        first = canon[0]
        assert isinstance(first, bytes)
        self.body_start = hashlib.sha256(first)
        self.body_rest = canon[1:]

    def body_hash(self, parts: list[bytes]) -> bytes:
        h = self.body_start.copy()
        for p in self.body_rest:
            h.update(p if isinstance(p, bytes) else relaxed_body_piece(parts[2 * p + 1]))
        return h.digest()

    def sign(self, parts: list[bytes]) -> bytes:
        """The complete signed message for one recipient."""
        message = b"".join(parts)
        if not self.exact:
            return self.signer.sign_bytes(message)
        signed = b"".join(
            p
            if isinstance(p, bytes)
            else relaxed_header(
                p[0], b"".join(x if isinstance(x, bytes) else parts[2 * x + 1] for x in p[1])
            )
            for p in self.header_plan
        )
        return self.signer.signature_headers(signed, self.body_hash(parts)) + message


_MARK = re.compile(rb"\x00(\d+)\x00")


def _split_markers(data: bytes) -> list[bytes | int]:
    """Literal bytes and slot indices, alternating, starting and ending with bytes."""
    out: list[bytes | int] = []
    pos = 0
    for m in _MARK.finditer(data):
        out += [data[pos : m.start()], int(m.group(1))]
        pos = m.end()
    out.append(data[pos:])
    return out


def signer_for(cfg: Config) -> Signer | None:
    """The configured signer, or None when `[dkim] enabled` is false."""
    return Signer(cfg) if cfg.dkim.enabled else None
