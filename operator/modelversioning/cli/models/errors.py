"""How ``kubectl models`` refuses: :class:`Refused` carries the message for the user and the exit
code. Raised by the pure modules and the commands alike; the app prints it on stderr and exits.

Exit codes: 0 ok; 1 the operation failed or was refused (API error, promotion blocked, no rollback
target, dirty git tree...); 2 usage (bad or missing options, incomplete metadata); 3 timed out.
"""

from __future__ import annotations

EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 1, 2, 3


class Refused(Exception):
    """The operation is refused; the message says why (exit code in ``code``)."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
