"""A doctor's findings: each one a check, a level, what was found and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.states import FindingLevel


@dataclass
class Finding:
    check: str  # spf | dkim | dmarc | alignment | bounce | ptr | tls | auth | provider | ...
    level: FindingLevel
    message: str
    fix: str = ""  # the record to publish or the setting to change

    def line(self) -> str:
        return f"[{self.level.value:>4}] {self.check}: {self.message}"


@dataclass
class DoctorReport:
    domain: str
    transport: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """A send would pass the receivers' rules: no failure."""
        return not self.failures

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.level == FindingLevel.FAIL]

    def add(self, check: str, level: FindingLevel, message: str, fix: str = "") -> None:
        self.findings.append(Finding(check, level, message, fix))

    def by_check(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]
