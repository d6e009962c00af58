"""When things happen: the weekly send time as an APScheduler trigger.

In core because the settings validate `schedule.cron` with the same code the scheduler
runs, so a bad cron is a configuration error at load time, not at the first fire.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from apscheduler.triggers.cron import CronTrigger

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.config import Config


def hhmm(value: str) -> tuple[int, int]:
    hh, mm = value.split(":")
    return int(hh), int(mm)


class WallClockCronTrigger(CronTrigger):
    """A CronTrigger that fires once per local wall-clock time.

    When clocks go back, 01:30 happens twice and a plain CronTrigger fires at both; a
    weekly issue must go out once. (When clocks go forward past a nonexistent 01:30,
    CronTrigger fires at the first instant after the gap, which is what we want.)
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        nxt = super().get_next_fire_time(previous_fire_time, now)
        if nxt is not None and previous_fire_time is not None and _wall(nxt, self.timezone) == \
                _wall(previous_fire_time, self.timezone):
            return super().get_next_fire_time(nxt, nxt)
        return nxt


def _wall(when: datetime, tz: Any) -> datetime:
    return when.astimezone(tz).replace(tzinfo=None, fold=0)


def weekly_trigger(cfg: Config) -> CronTrigger:
    """The weekly send time in the schedule's timezone; `schedule.cron` overrides it.

    A cron trigger in an IANA zone keeps 08:00 local across daylight-saving changes (the
    UTC gap between two runs is 167 or 169 hours that week).
    """
    s = cfg.schedule
    if s.cron:
        fields = s.cron.split()
        names: tuple[str, ...] = ("minute", "hour", "day", "month", "day_of_week")
        if len(fields) == 6:
            names = ("second", *names)
        elif len(fields) != 5:
            raise ConfigError(f"schedule.cron: {s.cron!r} needs 5 fields (6 with seconds first)")
        try:
            return WallClockCronTrigger(timezone=s.timezone, **dict(zip(names, fields, strict=True)))
        except ValueError as exc:
            raise ConfigError(f"schedule.cron: {exc}") from exc
    hh, mm = hhmm(s.time)
    return WallClockCronTrigger(day_of_week=s.day, hour=hh, minute=mm, timezone=s.timezone)
