"""Everything a transport needs about one frozen issue variant, prepared once per send."""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import cached_property

from core.config import Config
from pipeline.compose.message import (
    MessageTemplate,
    Recipient,
    address,
    clean_header,
    list_headers,
    list_unsubscribe,
)
from pipeline.compose.personalize import Personalizer


@dataclass
class PreparedVariant:
    cfg: Config
    issue_id: int
    number: int
    variant: str
    key: str
    subject: str
    html_template: str
    text_template: str

    @cached_property
    def html(self) -> Personalizer:
        return Personalizer(self.html_template, self.key)

    @cached_property
    def text(self) -> Personalizer:
        return Personalizer(self.text_template, self.key)

    @cached_property
    def mime(self) -> MessageTemplate:
        return MessageTemplate(self.cfg, key=self.key, subject=self.subject,
                               html_body=self.html_template, text_body=self.text_template,
                               issue_number=self.number, issue_id=self.issue_id)

    @property
    def from_address(self) -> str:
        return address(self.cfg.sender.from_name, self.cfg.sender.from_email)

    @property
    def reply_to(self) -> str:
        return self.cfg.sender.reply_to or self.cfg.sender.from_email

    @property
    def clean_subject(self) -> str:
        return clean_header(self.subject)

    def html_for(self, r: Recipient) -> str:
        return self.html.fill(r.values(), escape=html.escape)

    def text_for(self, r: Recipient) -> str:
        return self.text.fill(r.values())

    def list_unsubscribe(self, r: Recipient) -> str:
        return list_unsubscribe(self.cfg, r.unsubscribe_url, fold=False)

    def headers_for(self, r: Recipient) -> dict[str, str]:
        """Extra headers for HTTP APIs that build the MIME message themselves: the same
        values as in `mime.build`, unencoded (the provider encodes them)."""
        headers = dict(list_headers(self.cfg, self.number))
        headers["List-Id"] = f"{clean_header(self.cfg.site.name)} <{self.cfg.sender.list_id}>"
        headers["List-Unsubscribe"] = self.list_unsubscribe(r)
        return headers
