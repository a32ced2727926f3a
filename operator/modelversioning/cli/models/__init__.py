"""``kubectl models``: the kubectl plugin for ModelVersions and ModelEndpoints.

Layout (formatting is separate from API access, so views are tested without a cluster):

* :mod:`.views`   - pure: ModelVersion/ModelEndpoint dicts -> view data (rows, dicts);
* :mod:`.actions` - pure: register manifest + missing-metadata check, rollback target and patch,
  promote outcome;
* :mod:`.render`  - pure: view data -> rich renderables, YAML, JSON;
* :mod:`.gitinfo` - the training code checkout (commit, remote, dirty tree);
* :mod:`.kube`    - the only module that talks to the API server;
* :mod:`.app`     - the Typer commands wiring it together.

The console script is ``kubectl-models`` (``modelversioning.cli.kubectl_models:main``); with it on
``PATH``, ``kubectl models ...`` runs it as a kubectl plugin.
"""
