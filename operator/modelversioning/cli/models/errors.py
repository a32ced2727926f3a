"""How ``kubectl models`` refuses: :class:`Refused` carries the message for the user and the exit
code. Raised by the pure modules and the commands alike; the app prints it on stderr and exits.
:class:`ClusterError`: the cluster could not be asked or said no (exit 1).

Exit codes: 0 ok; 1 the operation failed or was refused (API error, promotion blocked, no rollback
target, dirty git tree...); 2 usage (bad or missing options, incomplete metadata); 3 timed out.
"""

from __future__ import annotations

from typing import Any

EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 1, 2, 3


class Refused(Exception):
    """The operation is refused; the message says why (exit code in ``code``)."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ClusterError(Exception):
    """Cannot talk to the cluster (kubeconfig, connection, API error); message is for humans, status
    the API server's HTTP status (None when there was no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def api_error_message(reason: str | None, body: str | bytes | None) -> str:
    """kubectl's `Error from server (Reason): message` from an API error's HTTP reason and body (a
    Status object, usually)."""
    import json

    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    status: dict[str, Any] = {}
    try:
        loaded = json.loads(text) if text else {}
        status = loaded if isinstance(loaded, dict) else {}
    except (TypeError, ValueError):
        status = {}
    why = status.get("reason") or reason or "Error"
    message = status.get("message") or (text if isinstance(text, str) and text else "") or str(reason)
    return f"Error from server ({why}): {message}"
