"""The one object every library function takes: settings plus a database engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import Engine

from core.config import Config, load_config
from core.db import has_schema, make_engine
from core.errors import StateError


@dataclass
class Context:
    config: Config
    _engine: Engine | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str | None = None, overrides: dict[str, Any] | None = None) -> Context:
        return cls(load_config(path, overrides))

    @cached_property
    def engine(self) -> Engine:
        return self._engine or make_engine(self.config.database_url)

    def require_schema(self) -> None:
        """Fail with a clear message when `kpdigest init` has not been run."""
        if not has_schema(self.engine):
            raise StateError("the database has no tables yet: run `kpdigest init` first")

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
