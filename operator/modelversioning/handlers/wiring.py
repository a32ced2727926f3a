"""kopf wiring: every handler this operator registers with kopf, registered here on import (the
entry point, ``cli/main.py``'s ``run``, imports this module and calls ``register_children``).

Watch events feed the Store and a work queue (``watch``); one reconcile path serves create, update,
resume (the initial listing), related-object changes and the periodic drift check (``resync``);
``startup`` creates the one ``runtime.Operator``. Nothing here decides anything.

Only watch-event handlers are used, so kopf writes no progress annotations onto user objects: the
operator never edits a user's object except its status and our own finalizer.
"""

from __future__ import annotations

import kopf

from modelversioning.api.settings import Settings
from modelversioning.api.wire import (
    ADMISSION_BINDING,
    ADMISSION_POLICY,
    MODEL,
    MODELAPPROVAL,
    MODELPLATFORMPOLICY,
    NAMESPACE,
    RUNTIME_KINDS,
)
from modelversioning.handlers import platform, policy, startup, watch
from modelversioning.handlers.activity import install_pause_hook
from modelversioning.handlers.kube import DEPLOYMENT, MODELENDPOINT, MODELVERSION, POD, SERVICE
from modelversioning.handlers.runtime import MANAGED, PAUSE, current, queue_depth

install_pause_hook(PAUSE)

kopf.on.startup()(startup.startup)
kopf.on.cleanup()(startup.cleanup)
kopf.on.event(MODELVERSION.group, MODELVERSION.version, MODELVERSION.plural)(watch.modelversion_event)
kopf.on.event(MODEL.group, MODEL.version, MODEL.plural)(watch.model_event)
kopf.on.event(MODELAPPROVAL.group, MODELAPPROVAL.version, MODELAPPROVAL.plural)(watch.modelapproval_event)
kopf.on.event(MODELENDPOINT.group, MODELENDPOINT.version, MODELENDPOINT.plural)(watch.modelendpoint_event)
kopf.on.event(MODELPLATFORMPOLICY.group, MODELPLATFORMPOLICY.version, MODELPLATFORMPOLICY.plural)(
    policy.policy_event
)
kopf.on.event(NAMESPACE.group, NAMESPACE.version, NAMESPACE.plural)(policy.namespace_event)
for _rt in RUNTIME_KINDS:  # the runtime catalog: versions not resolved yet may resolve now
    kopf.on.event(_rt.group, _rt.version, _rt.plural, id=f"{_rt.kind.lower()}_event")(
        watch.runtime_event(_rt.kind)
    )
for _res in (ADMISSION_POLICY, ADMISSION_BINDING):  # the chart's, observed: approvals count while enforced
    kopf.on.event(_res.group, _res.version, _res.plural, id=f"{_res.kind.lower()}_event")(
        policy.admission_event(_res.kind)
    )
kopf.on.probe(id="queue")(queue_depth)


def register_children(settings: Settings) -> None:
    """Watch our own children and their pods (label selector), the enabled routers' route kinds and
    what they read."""
    kopf.on.event(
        DEPLOYMENT.group, DEPLOYMENT.version, DEPLOYMENT.plural, labels=MANAGED, id="deployment_event"
    )(watch.child_event("Deployment"))
    kopf.on.event(SERVICE.group, SERVICE.version, SERVICE.plural, labels=MANAGED, id="service_event")(
        watch.child_event("Service")
    )
    # the slots' pods: what their status says of a failing slot (domain.pod_health)
    kopf.on.event(POD.group, POD.version, POD.plural, labels=MANAGED, id="pod_event")(watch.pod_event)
    for res in platform.route_resources(settings):  # each router module names its own route resource
        kopf.on.event(res.group, res.version, res.plural, labels=MANAGED, id=f"{res.kind.lower()}_event")(
            watch.child_event(res.kind)
        )
    for res in platform.read_resources(settings):  # what the routers read of the platform: not ours
        kopf.on.event(res.group, res.version, res.plural, id=f"{res.kind.lower()}_read")(
            platform.read_event(res.kind, current, watch.track)
        )
