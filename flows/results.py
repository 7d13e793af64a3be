"""How the command line shows what a command returned, declared per command in the command
table (``zsad.flows.commands.Command.shown``) instead of branching on the command's name: a
``Shown`` prints the result and says the exit code (0 done; 1 done, but some inputs failed).

Example:
    >>> r = as_json({"n_scored": 2, "n_failed": 1})
    >>> r.exit_code
    1
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Protocol

EXIT_DONE, EXIT_PARTIAL = 0, 1


class Shown(Protocol):
    """A command's result as the command line shows it."""

    exit_code: int

    def show(self) -> None:
        """Print it (stdout: the result; stderr: what went wrong)."""


def _failed(data: Any) -> bool:
    return isinstance(data, dict) and bool(data.get("n_failed") or data.get("failed"))


@dataclass(frozen=True)
class Printed:
    """A result the command printed itself (its table); only its exit code is left (1 when it
    names failures: ``n_failed`` or ``failed``)."""

    data: Any

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if _failed(self.data) else EXIT_DONE

    def show(self) -> None:
        return None


@dataclass(frozen=True)
class Json(Printed):
    """A result printed as JSON."""

    def show(self) -> None:
        print(json.dumps(self.data, indent=2, default=str))


@dataclass(frozen=True)
class Failures(Json):
    """A result whose failures (``failed``: their records) are listed on stderr, then printed as JSON."""

    command: str = ""

    def show(self) -> None:
        from zsad.tasks.failures import Failure
        failed = [Failure.from_record(f) for f in self.data.get("failed", [])]
        for f in failed:
            print(f"zsad {self.command}: error: {f.text()}", file=sys.stderr)
        if failed:
            print(f"zsad {self.command}: {self.data.get('n_images', 0)} images done, {len(failed)} failed (listed "
                  "above)", file=sys.stderr)
        super().show()


def as_json(data: Any) -> Shown:
    return Json(data)


def as_printed(data: Any) -> Shown:
    return Printed(data)
