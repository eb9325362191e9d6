"""Size limits on what an input record may hold. One bad producer must not be able to
exhaust a worker's memory, its state store or the dead-letter topic, so every bound is
checked before the record is stored or copied anywhere."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Each field is set by the environment variable `LEADPULSE_<FIELD>` (see `variable`)."""

    max_record_bytes: int = 100_000
    max_properties: int = 200
    max_depth: int = 8
    max_string: int = 2_000
    dead_letter_excerpt: int = 2_000


DEFAULT_LIMITS = InputLimits()


def variable(field: str) -> str:
    """The setting that raises a limit, named in every rejection so the fix is one lookup."""
    return f"LEADPULSE_{field.upper()}"
