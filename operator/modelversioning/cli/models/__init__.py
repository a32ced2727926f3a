"""``kubectl models``: the kubectl plugin for ModelVersions and ModelEndpoints.

Layout (each command is a thin shell over pure functions, tested without a cluster):

* :mod:`.app`      - assembles the Typer app from the command modules (global options, exit codes);
* :mod:`.commands` - one module per command group (register, inspect, lifecycle, registry, rollout,
  imports): parse the options, prepare/explain with the pure modules, call the cluster, render;
* :mod:`.context`  - what every command needs: the global options, the output choice, errors;
* pure (no typer/rich/kubernetes): :mod:`.register_plan` (register options -> manifest),
  :mod:`.actions` (promote and rollback: patches, states, messages), :mod:`.views` (objects -> view
  data), :mod:`.registry_views`, :mod:`.rollout_views`, :mod:`.inputs`, :mod:`.errors`,
  :mod:`.gitinfo`, :mod:`.importers` (MLflow, DVC);
* :mod:`.render`, :mod:`.render_registry`, :mod:`.render_rollout` - view data -> rich tables, YAML,
  JSON;
* :mod:`.kube`     - the only module that talks to the API server.

import-linter contracts (pyproject.toml) keep it so: app > commands > context > rendering and the
cluster > pure, command modules independent of each other.

The console script is ``kubectl-models`` (``modelversioning.cli.kubectl_models:main``); with it on
``PATH``, ``kubectl models ...`` runs it as a kubectl plugin.
"""
