"""Configuration problems: each says where it is (file, field, device) and what is expected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError


@dataclass(frozen=True)
class ConfigProblem:
    file: Path
    where: str  # field path such as 'broker.port' or 'location.lat'
    message: str
    device: str | None = None
    row: str = ""  # which entry of the file: 'device[3]' (TOML) or 'line 12' (CSV)

    def __str__(self) -> str:
        parts = [str(self.file)]
        if self.row or self.device:
            owner = f" (device {self.device})" if self.device else ""
            parts.append(f"{self.row}{owner}".strip())
        if self.where:
            parts.append(self.where)
        return ": ".join([*parts, self.message])


class ConfigError(Exception):
    """Every problem found in a configuration, reported at once."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def problems_from_validation(
    exc: ValidationError, file: Path, row: str = "", device: str | None = None
) -> list[ConfigProblem]:
    """Turn pydantic errors into problems. The offending input is never echoed (it may be a key)."""
    found = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(part) for part in err["loc"] if not _is_union_tag(part))
        message = err["msg"].removeprefix("Value error, ")
        found.append(ConfigProblem(file, loc, message, device, row))
    return found


def _is_union_tag(part: int | str) -> bool:
    # pydantic puts the chosen union member ('2c', '3', 'function-after[...]') into the location
    return isinstance(part, str) and (part in ("2c", "3") or "[" in part)
