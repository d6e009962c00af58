"""DKIM signing: signed MIME messages per second on one core, and the SMTP send path.

On the fixed 12-article issue of the golden tests (one variant, per-recipient links):
- unsigned messages/s (`MessageTemplate.build`),
- signed with RSA-2048, Ed25519 and both (`VariantSigner.sign` over `build_parts`),
- dkimpy signing the same messages (RSA-2048 and Ed25519) for comparison,
- the SMTP transport's `send_batch` over 4 connections to a loopback aiosmtpd sink running
  as its own process, unsigned and RSA-signed.

Run: `.venv/bin/python -m benchmarks.bench_dkim [--n N] [--dkimpy N] [--smtp N]`
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.compose.message import Recipient
from pipeline.deliver import dkim as kdkim
from pipeline.deliver.transports.smtp import SmtpTransport
from subscribers.tokens import link
from tests.golden import fixed_issue


def _recipients(n: int) -> list[Recipient]:
    base, secret = "https://digest.example.com", "bench-secret"
    return [
        Recipient(
            i,
            f"reader{i}@example.com",
            f"Reader Nümber {i}" if i % 3 else "",
            link(base, secret, "unsubscribe", i),
            link(base, secret, "preferences", i),
        )
        for i in range(1, n + 1)
    ]


def _rate(fn: Callable[[Recipient], Any], people: list[Recipient]) -> float:
    start = time.perf_counter()
    for r in people:
        fn(r)
    return len(people) / (time.perf_counter() - start)


def _config(keys: dict[str, Path], algs: tuple[str, ...], **extra: Any) -> Any:
    entries = [
        {"selector": f"s{i}", "algorithm": a, "key_file": str(keys[a])} for i, a in enumerate(algs)
    ]
    return fixed_issue.config(dkim={"enabled": bool(algs), "keys": entries}, **extra)


def signing(keys: dict[str, Path], n: int, n_dkimpy: int) -> None:
    people = _recipients(n)
    base = fixed_issue.prepared(_config(keys, ()))
    size = len(base.mime.build(people[0]))
    print(f"message: {size} bytes; {n} recipients, best of 3")
    unsigned = max(_rate(base.mime.build, people) for _ in range(3))
    print(f"  unsigned                 {unsigned:>9,.0f} messages/s")
    for label, algs in (
        ("RSA-2048", ("rsa-sha256",)),
        ("Ed25519", ("ed25519-sha256",)),
        ("RSA-2048 + Ed25519", kdkim.ALGORITHMS),
    ):
        cfg = _config(keys, algs)
        v = fixed_issue.prepared(cfg)
        vs = kdkim.Signer(cfg).for_template(v.mime)
        rate = max(
            _rate(lambda r, v=v, vs=vs: vs.sign(v.mime.build_parts(r)), people) for _ in range(3)
        )
        print(f"  signed {label:<18}{rate:>9,.0f} messages/s ({rate / unsigned:.1%} of unsigned)")
    try:
        import dkim
    except ModuleNotFoundError:
        print("  dkimpy not installed: no comparison")
        return
    for label, alg in (("RSA-2048", "rsa-sha256"), ("Ed25519", "ed25519-sha256")):
        pem = keys[alg].read_bytes()
        if alg == "ed25519-sha256":  # dkimpy takes the base64 seed
            import base64

            from cryptography.hazmat.primitives import serialization

            key = serialization.load_pem_private_key(pem, None)
            pem = base64.b64encode(key.private_bytes_raw())  # type: ignore[union-attr]
        heads = [h.encode() for h in fixed_issue.config().dkim.headers]
        msgs = [base.mime.build(r) for r in people[:n_dkimpy]]
        start = time.perf_counter()
        for m in msgs:
            dkim.sign(
                m,
                b"s0",
                b"example.com",
                pem,
                include_headers=heads,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=alg.encode(),
            )
        rate = len(msgs) / (time.perf_counter() - start)
        print(f"  dkimpy {label:<18}{rate:>9,.0f} messages/s ({n_dkimpy} messages)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def smtp(keys: dict[str, Path], n: int, rounds: int = 3) -> None:
    """Batches of 50 over 4 connections in 4 threads (the engine's `max_in_flight`), to an
    aiosmtpd sink in its own process; unsigned and RSA-signed runs alternate. The sink
    (Python) is the bottleneck, and the machine is shared, so the sender's CPU per message
    is reported too: that is what signing adds."""
    port = _free_port()
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(sink.pid, {1})  # the sender has core 0
        _wait(port)
        people = _recipients(n)
        results: dict[str, list[tuple[float, float]]] = {"unsigned": [], "RSA-2048": []}
        for _ in range(rounds):
            for label, algs in (("unsigned", ()), ("RSA-2048", ("rsa-sha256",))):
                results[label].append(_smtp_run(keys, algs, port, people))
        print(
            f"SMTP send_batch, 4 connections, to a loopback sink, {n} messages, "
            f"{rounds} alternating runs (median):"
        )
        med = {
            k: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v))
            for k, v in results.items()
        }
        for label, (rate, cpu) in med.items():
            runs = " · ".join(f"{r:,.0f}" for r, _ in results[label])
            print(
                f"  {label:<12}{rate:>7,.0f} messages/s ({runs}); "
                f"sender CPU {cpu * 1e3:.2f} ms/message"
            )
        print(f"  signed / unsigned  {med['RSA-2048'][0] / med['unsigned'][0]:.1%}")
    finally:
        sink.terminate()
        sink.wait(timeout=30)


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _smtp_run(
    keys: dict[str, Path], algs: tuple[str, ...], port: int, people: list[Recipient]
) -> tuple[float, float]:
    cfg = _config(
        keys,
        algs,
        transport={
            "name": "smtp",
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "connections": 4},
        },
    )
    t = SmtpTransport(cfg)
    v = fixed_issue.prepared(cfg)
    t.raw_message(v, people[0])  # keys read, variant canonicalised: once per send
    batches = [people[i : i + 50] for i in range(0, len(people), 50)]
    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(4) as pool:
        for out in pool.map(lambda b: t.send_batch(v, b, "k"), batches):
            assert all(o.state == "sent" for o in out), out[0]
    rate = len(people) / (time.perf_counter() - start)
    cpu = (time.process_time() - cpu) / len(people)
    t.close()
    return rate, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--dkimpy", type=int, default=200)
    parser.add_argument("--smtp", type=int, default=4000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})  # one core
    with tempfile.TemporaryDirectory() as tmp:
        keys = {}
        for alg in kdkim.ALGORITHMS:
            keys[alg] = Path(tmp) / f"{alg}.pem"
            keys[alg].write_bytes(kdkim.generate_key(alg))
        signing(keys, args.n, args.dkimpy)
        if args.smtp:
            smtp(keys, args.smtp)


if __name__ == "__main__":
    main()
