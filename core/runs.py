"""What a scheduled job reports: kept in core because job bodies live in several stages
(collect, review, maintenance) and the scheduler's registry sits above them all."""

from __future__ import annotations

from dataclasses import dataclass

from core.states import JobOutcome


@dataclass
class JobResult:
    result: JobOutcome
    message: str
    noop: bool = False  # nothing happened: logged, not kept (dispatch runs every minute)
