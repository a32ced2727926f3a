"""``kubectl-models``: the ``kubectl models`` plugin (entry point; the commands live in
:mod:`modelversioning.cli.models`).

    kubectl models register MODEL VERSION --artifact PATH_OR_URI ... [--apply]
    kubectl models list [MODEL]
    kubectl models get|describe MODEL VERSION
    kubectl models history MODEL
    kubectl models promote MODEL VERSION --to STAGE [--reason TEXT]
    kubectl models rollback ENDPOINT [--to VERSION] [--print]
    kubectl models status|which ENDPOINT
    kubectl models diff MODEL V1 V2

Global options (before or after the command): --kubeconfig, --context, -n/--namespace,
-o/--output table|yaml|json. Exit codes: 0 ok, 1 failed/refused, 2 usage, 3 timeout.
"""

from __future__ import annotations

from modelversioning.cli.models.app import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
