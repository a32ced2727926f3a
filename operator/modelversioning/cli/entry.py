"""The console scripts ``modelversioning`` and ``modelversioning-operator`` (the image's entry point).

``verify-artifact`` is the init container of every model pod, and the pod waits for its start: it goes
straight to its own argparse command (:mod:`modelversioning.cli.verify`) without importing typer,
click, rich or the operator. Every other command is the typer app of :mod:`modelversioning.cli.main`.
"""

from __future__ import annotations

import sys

VERIFY = "verify-artifact"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == VERIFY:
        from modelversioning.cli import verify

        sys.exit(verify.main(sys.argv[2:]))
    from modelversioning.cli.main import main as app

    app()


if __name__ == "__main__":
    main()
