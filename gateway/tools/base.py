"""What every tool returns: data for the model and a template sentence for when the model cannot phrase it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ToolError(RuntimeError):
    """A tool could not answer. `spoken` is a short line for the user; the message is for the operator."""

    def __init__(self, message: str, spoken: str, *, code: str = "UNAVAILABLE", retryable: bool = True) -> None:
        super().__init__(message)
        self.spoken = spoken
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True)
class ToolResult:
    tool: str
    data: dict[str, Any]          # facts, handed to the model as data (never instructions)
    summary: str                  # the template answer, spoken as-is if the model fails
    numbers: tuple[str, ...] = field(default=())  # facts the phrasing must keep (e.g. "21")
