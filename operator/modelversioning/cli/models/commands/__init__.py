"""The ``kubectl models`` commands, one module per group; each command is a thin shell: parse the
options, call the pure functions that prepare and explain (``register_plan``, ``actions``,
``views``, ``registry_views``, ``rollout_views``, ``importers``), call the cluster, render.

Command modules import the shared :mod:`..context` and the pure modules, never the app
(:mod:`..app` assembles them) and never each other (import-linter contracts in pyproject.toml).
"""
