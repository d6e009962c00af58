"""The WSGI server's settings that follow from the config (`kpdigest serve` uses waitress).

Waitress drops `X-Forwarded-*` headers unless it is told which peer is the proxy; told,
it sets the client address, scheme and host from them itself (and the app's ProxyFix,
kept for other servers, then reads the same values again). Without `web.trusted_proxies`
no header is trusted, so a client cannot claim another address or https.
"""

from __future__ import annotations

from typing import Any

from core.config import Config

PROXY_HEADERS = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}


def waitress_options(cfg: Config) -> dict[str, Any]:
    options: dict[str, Any] = {
        # the largest body any route takes (the CSV import); routes set lower limits
        "max_request_body_size": cfg.web.import_max_mb * 1024 * 1024,
        "clear_untrusted_proxy_headers": True,
    }
    if cfg.web.trusted_proxies > 0:
        options.update(trusted_proxy=cfg.web.proxy_address,
                       trusted_proxy_count=cfg.web.trusted_proxies,
                       trusted_proxy_headers=set(PROXY_HEADERS))
    return options
