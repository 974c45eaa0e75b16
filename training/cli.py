"""Command-line pieces every script shares: true/false flags as bash passes them, and flags
of the authors' release that this project accepts but does not need."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


def str2bool(value: str | bool) -> bool:
    """argparse type for true/false flags that bash scripts pass as strings."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in ("1", "true", "yes", "y", "on"):
        return True
    if v in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def add_bool(group: Any, *names: str, default: bool, help: str) -> None:
    """A true/false flag that also works bare (`--pretrained` means true, as in the release)."""
    group.add_argument(
        *names, type=str2bool, nargs="?", const=True, default=default, metavar="BOOL", help=help
    )


class _Ignored(argparse.Action):
    """Accept a flag, say once on stderr that it is ignored and why, store nothing."""

    def __init__(self, option_strings: Sequence[str], dest: str, reason: str, **kwargs: Any):
        self.reason = reason
        super().__init__(option_strings, argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"notice: {option_string} is ignored: {self.reason}", file=sys.stderr)


TRACKING_REASON = "no experiment-tracking service is needed; every metric is in summary.csv"


def add_ignored(parser: argparse.ArgumentParser, name: str, reason: str, takes_value: bool) -> None:
    """A release flag this project has no use for: accepted with a one-line notice."""
    parser.add_argument(
        name, action=_Ignored, reason=reason, nargs=1 if takes_value else 0, help=argparse.SUPPRESS
    )
