"""Entry point of a verifier worker process (``python -m modelversioning.artifacts.worker``); the
protocol and the limits are in :mod:`modelversioning.artifacts.runner`."""

from __future__ import annotations

import sys

from modelversioning.artifacts.runner import main

if __name__ == "__main__":
    sys.exit(main())
