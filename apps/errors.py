"""How the programs end: the one error a user can fix, the exit codes, and the one-line error message."""
from __future__ import annotations

import sys

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention


class UserError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""


def fail(prog: str, message: object, code: int) -> int:
    """Print ``prog: error: message`` on stderr and return ``code`` (the program's exit status)."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code
