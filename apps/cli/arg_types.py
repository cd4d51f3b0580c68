"""argparse ``type=`` callables for numeric options: parse, check the range, or a one-line error."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

N = TypeVar("N", int, float)


def checked_number(kind: type[N], ok: Callable[[N], bool], problem: str,
                   not_a: str = "a number") -> Callable[[str], N]:
    """A parser of ``kind`` values for which ``ok`` holds. Errors: ``'{text}' is not {not_a}`` when the text does
    not parse, else ``problem`` formatted with ``text`` (as typed) and ``value`` (as parsed). NaN fails every
    comparison, so a range check written as ``ok`` rejects it."""
    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {not_a}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(problem.format(text=text, value=value))
        return value
    return parse
