"""Secrets out of logged error text: a model's exception message may quote a key or a password.

Two nets: the values of the bundle's own secrets (read once, at startup, as the model sees them),
and the shapes credentials usually take (``Bearer <token>``, ``password=...``, ``api_key: ...``,
well-known key prefixes such as ``sk-`` or ``AKIA``). Both become ``[REDACTED]``.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable

MASK = "[REDACTED]"
_SHAPES = re.compile(
    r"(?i)(?P<keep>\bbearer\s+|\bbasic\s+"
    r"|\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|auth(?:orization)?)[\"']?\s*[=:]\s*[\"']?"
    r"(?!(?:bearer|basic)\s))"  # "Authorization: Bearer x": the token is masked, not the scheme
    r"(?P<value>[^\s\"',;]{3,})"
    r"|\b(?P<key>(?:sk|pk|rk)[-_][A-Za-z0-9_-]{8,}|gh[pousr]_[A-Za-z0-9]{16,}|xox[abprs]-[A-Za-z0-9-]{8,}"
    r"|AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{16,})"
)
_MIN_SECRET = 4  # shorter values would mask ordinary words


class Redactor:
    """``redactor(text)`` is ``text`` with known secret values and credential shapes masked."""

    def __init__(self, secret_values: Iterable[str | None] = ()) -> None:
        values = sorted({v for v in secret_values if v and len(v) >= _MIN_SECRET}, key=len, reverse=True)
        self._values = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(MASK, text)
        return _SHAPES.sub(_mask, text)

    def traceback(self, exc: BaseException) -> str:
        """``exc``'s traceback as text, redacted."""
        return self("".join(traceback.format_exception(exc)).rstrip("\n"))


def _mask(match: re.Match[str]) -> str:
    keep = match.group("keep")
    return keep + MASK if keep is not None else MASK
