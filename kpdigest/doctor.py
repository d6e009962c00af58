"""`kpdigest doctor`: the sending domain, provider and site against the mailbox providers'
bulk-sender rules; exit 0 only when a send would pass them."""

from __future__ import annotations

import click

from kpdigest.base import Lazy, get, pass_ctx


@click.command()
@click.option(
    "--keygen",
    type=click.Choice(["rsa-sha256", "ed25519-sha256"]),
    default=None,
    help="Print a new DKIM private key (PEM) and the TXT record to publish, then stop.",
)
@click.option(
    "--selector", default="kpd", show_default=True, help="Selector named in --keygen's record."
)
@click.option("--offline", is_flag=True, help="DNS only: no provider, SMTP or site connections.")
@pass_ctx
def doctor(obj: Lazy, keygen: str | None, selector: str, offline: bool) -> None:
    """Check SPF, DKIM, DMARC and alignment, bounce MX, the SMTP host (PTR, TLS, login),
    the provider's credentials and domain, one-click unsubscribe and the secrets."""
    from core.errors import CheckFailed

    if keygen:
        _keygen(obj, keygen, selector)
        return
    from pipeline.deliver.doctor import run_doctor

    cfg = get(obj).config
    report = run_doctor(cfg, network=not offline)
    click.echo(f"sending domain {report.domain}, transport {report.transport}")
    for f in report.findings:
        click.echo(f.line())
        if f.fix and f.level != "ok":
            click.echo(f"       fix: {f.fix}")
    if not report.ok:
        raise CheckFailed(
            f"{len(report.failures)} failure(s): receivers would reject or junk this "
            "mail; `issue send` refuses it unless --force"
        )
    warnings = sum(f.level == "warn" for f in report.findings)
    click.echo(f"a send would pass the rules ({warnings} warning(s))")


def _keygen(obj: Lazy, algorithm: str, selector: str) -> None:
    from pipeline.deliver.dkim import SigningKey, generate_key, parse_private_key

    pem = generate_key(algorithm)
    key = SigningKey(selector, algorithm, parse_private_key(pem, algorithm, "--keygen"))
    domain = get(obj).config.dkim.domain or get(obj).config.sender.domain
    click.echo(pem.decode(), nl=False)
    click.echo(f'# publish: {selector}._domainkey.{domain} TXT "{key.public_record}"', err=True)


def register(main: click.Group) -> None:
    main.add_command(doctor)
