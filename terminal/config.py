"""Configuration: one TOML file, validated at start, with defaults good enough to run with no file.

The file comes from ``--config`` or ``TILLPOINT_CONFIG``. Every value is checked before anything
starts; a bad one raises ``ConfigError`` naming the key (``hq.push_interval``) and what was expected.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from terminal.errors import ConfigError

ENV_CONFIG = "TILLPOINT_CONFIG"
ENV_STATE = "STATE_DIRECTORY"  # set by systemd's StateDirectory=


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TerminalSection(_Section):
    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] = "T-001"
    store_id: Annotated[str, Field(min_length=1, max_length=64)] = "S-001"
    data_dir: str = ""
    """Where the database lives; empty means $STATE_DIRECTORY, else ./var/tillpoint."""
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    currency_exponent: Annotated[int, Field(ge=0, le=4)] = 2


class SecuritySection(_Section):
    card_key_file: str = ""
    """The card-hash key, kept outside the database; empty means <data_dir>/../card-hash.key."""
    api_token_file: str = ""
    """The local API's token; empty means <data_dir>/api.token (created 0600 at start)."""


class ReaderSection(_Section):
    devices: list[str] = Field(default_factory=lambda: ["auto:"])

    @field_validator("devices")
    @classmethod
    def _kinds_known(cls, value: list[str]) -> list[str]:
        for spec in value:
            if ":" not in spec:
                raise ValueError(f"{spec!r} is not 'kind:argument' (e.g. 'pcsc:', 'sim:')")
        return value


class HqSection(_Section):
    url: Annotated[str, Field(pattern=r"^https?://")] = "http://127.0.0.1:8731"
    token: str = ""
    token_file: str = ""
    ca_file: str = ""
    push_interval: Annotated[float, Field(gt=0, le=3600)] = 2.0
    pull_interval: Annotated[float, Field(gt=0, le=86400)] = 10.0
    timeout: Annotated[float, Field(gt=0, le=120)] = 5.0
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 500
    backoff_max: Annotated[float, Field(gt=0, le=3600)] = 60.0


class ApiSection(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8732
    enabled: bool = True


class SaleSection(_Section):
    auto_amount: Annotated[int, Field(ge=0)] = 0
    """When above 0, every identified tap rings a one-line sale of this many minor units (demo)."""


class Config(_Section):
    terminal: TerminalSection = TerminalSection()
    security: SecuritySection = SecuritySection()
    reader: ReaderSection = ReaderSection()
    hq: HqSection = HqSection()
    api: ApiSection = ApiSection()
    sale: SaleSection = SaleSection()

    @property
    def data_dir(self) -> Path:
        if self.terminal.data_dir:
            return Path(self.terminal.data_dir)
        state = os.environ.get(ENV_STATE, "").split(":")[0]
        return Path(state) if state else Path("var") / "tillpoint"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "terminal.db"

    @property
    def card_key_path(self) -> Path:
        if self.security.card_key_file:
            return Path(self.security.card_key_file)
        return self.data_dir.parent / "card-hash.key"

    @property
    def api_token_path(self) -> Path:
        return Path(self.security.api_token_file or self.data_dir / "api.token")


def _key_of(error: dict[str, Any]) -> str:
    return ".".join(str(part) for part in error["loc"])


def validate(raw: dict[str, Any]) -> Config:
    """Check a parsed TOML document; the first bad value becomes a ConfigError naming its key."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        expected = first["msg"]
        if first["type"] == "extra_forbidden":
            expected = "unknown key"
        raise ConfigError(_key_of(first), f"{expected} (got {first.get('input')!r})") from exc


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the config from ``path``, else $TILLPOINT_CONFIG, else the built-in defaults."""
    chosen = path or os.environ.get(ENV_CONFIG)
    if not chosen:
        return Config()
    try:
        raw = tomllib.loads(Path(chosen).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("--config", f"file {str(chosen)!r} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"valid TOML ({exc})") from exc
    return validate(raw)
