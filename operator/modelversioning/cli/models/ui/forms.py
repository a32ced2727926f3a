"""What the web view's action forms may carry and how an action runs: fields checked against fixed
patterns (names, stages, a bounded reason), and each action through the same code as ``kubectl models``
(:mod:`..operations`). Pure but for ``run_action``, which acts through the viewer's Cluster."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from modelversioning.api.wire import MODELENDPOINT
from modelversioning.cli.models import actions
from modelversioning.cli.models import operations as ops
from modelversioning.cli.models.errors import Refused
from modelversioning.cli.models.kube import Cluster

ACTION_TIMEOUT = 30.0  # seconds an action waits for the operator (then the page says where it stands)

# What a request may name. The API paths are built with quote() anyway; this refuses nonsense early.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,252}$")
_STAGE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def run_action(cluster: Cluster, action: str, f: Mapping[str, str]) -> str:
    """One action through the same code as ``kubectl models`` (operations); the line to show."""
    if action == "promote":
        return ops.promote(
            cluster, f["model"], f["version"], f["stage"], f.get("reason") or None, ACTION_TIMEOUT
        )
    if action == "approve":
        data = ops.approve(cluster, f["model"], f["version"], f["stage"], f.get("reason") or None)
        from modelversioning.cli.models import registry_views

        return registry_views.approval_text(data)
    if action == "rollback":
        ep = cluster.get(MODELENDPOINT, f["endpoint"])
        plan = actions.plan_rollback(ep, f.get("to") or None)
        asked = ops.RollbackAsked(f.get("reason") or None, f.get("to") or None)
        done = ops.rollback(cluster, ep, plan, asked, ACTION_TIMEOUT)
        if done.plan.noop:
            return actions.rollback_noop_text(done.plan)
        return actions.rolled_back_text(done.plan, done.seconds)
    kind = action.removeprefix("rollout-")
    lines, applied = ops.rollout_action(cluster, f["endpoint"], kind, ACTION_TIMEOUT)
    if not applied:
        raise Refused("; ".join(lines))
    return "; ".join(line for line in lines if line)


def name_param(request: web.Request, key: str) -> str:
    value = request.match_info[key]
    if not _NAME.match(value):
        raise web.HTTPBadRequest(reason=f"not a name: {key}")
    return value


def action_fields(src: Mapping[str, Any], action: str, confirmed: bool) -> dict[str, str]:
    """The action's fields, checked: names and versions as names, a stage as a stage, a reason as
    text of at most 1024 characters; anything else is dropped. What the action needs must be there
    (the stage only once confirmed: the confirmation asks for it)."""
    out: dict[str, str] = {}
    for key in ("model", "version", "endpoint", "to"):
        v = str(src.get(key, "") or "")
        if v:
            if not _NAME.match(v):
                raise web.HTTPBadRequest(reason=f"not a name: {key}")
            out[key] = v
    stage = str(src.get("stage", "") or "")
    if stage:
        if not _STAGE.match(stage):
            raise web.HTTPBadRequest(reason="not a stage")
        out["stage"] = stage
    reason = str(src.get("reason", "") or "")
    if len(reason) > 1024:
        raise web.HTTPBadRequest(reason="the reason is longer than 1024 characters")
    if reason:
        out["reason"] = reason
    for key in REQUIRED.get(action, ("endpoint",)):
        if key not in out and (confirmed or key != "stage"):
            raise web.HTTPBadRequest(reason=f"{action} needs {key}")
    return out


REQUIRED = {"promote": ("model", "version", "stage"), "approve": ("model", "version", "stage")}
