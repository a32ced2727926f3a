"""API access for ``kubectl models``: kubeconfig/context/namespace like kubectl, who the user is,
get/list/create/merge-patch of our objects and routes, and deadline-bound waits on a watch.

This is the only module of the plugin that imports the kubernetes client (lazily, so that
``--help`` and ``register`` without ``--apply`` never need it).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from modelversioning.api.wire import MODELENDPOINT, MODELVERSION
from modelversioning.api.wire import Resource as Resource

T = TypeVar("T")

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


MODELVERSIONS, MODELENDPOINTS = MODELVERSION, MODELENDPOINT


def route_resource(router_name: str) -> Resource | None:
    """The route object kind written for spec.routing.router (None for a router that writes none)."""
    from modelversioning.render.routers import get_router

    return get_router(router_name).identity.route


class ClusterError(Exception):
    """Cannot talk to the cluster (kubeconfig, connection, API error); message is for humans."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class WaitTimeout(Exception):
    def __init__(self, last: dict[str, Any] | None) -> None:
        super().__init__("timed out")
        self.last = last


def api_error_message(e: Any) -> str:
    """kubectl's `Error from server (Reason): message` from an ApiException."""
    import json

    body: dict[str, Any] = {}
    try:
        body = json.loads(e.body) if e.body else {}
    except (TypeError, ValueError):
        body = {}
    reason = body.get("reason") or e.reason or "Error"
    message = body.get("message") or (e.body if isinstance(e.body, str) and e.body else "") or str(e.reason)
    return f"Error from server ({reason}): {message}"


def _kubeconfig_paths(explicit: str | None) -> list[str]:
    raw = explicit or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return [os.path.expanduser(p) for p in raw.split(os.pathsep) if p]


class Cluster:
    """One kubeconfig + context + namespace, resolved the way kubectl resolves them."""

    def __init__(
        self, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self._namespace = namespace

    # ---- configuration ------------------------------------------------------------------------
    @cached_property
    def _config_doc(self) -> dict[str, Any] | None:
        """The merged kubeconfig (first file wins for current-context, like kubectl); None if absent."""
        import yaml

        paths = [p for p in _kubeconfig_paths(self.kubeconfig) if os.path.exists(p)]
        if self.kubeconfig and not paths:
            raise ClusterError(f"kubeconfig {self.kubeconfig} does not exist")
        merged: dict[str, Any] | None = None
        for p in paths:
            try:
                doc = yaml.safe_load(Path(p).read_text()) or {}
            except (OSError, yaml.YAMLError) as e:
                raise ClusterError(f"cannot read kubeconfig {p}: {e}") from None
            if merged is None:
                merged = {"contexts": [], "users": [], "clusters": [], "current-context": None}
            for key in ("contexts", "users", "clusters"):
                have = {i.get("name") for i in merged[key]}
                merged[key] += [i for i in doc.get(key) or [] if i.get("name") not in have]
            merged["current-context"] = merged["current-context"] or doc.get("current-context")
        return merged

    @property
    def in_cluster(self) -> bool:
        return self._config_doc is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))

    @cached_property
    def context_name(self) -> str | None:
        doc = self._config_doc
        if doc is None:
            return None
        name = self.context or doc.get("current-context")
        if self.context and not any(c.get("name") == self.context for c in doc["contexts"]):
            raise ClusterError(f"context {self.context!r} not found in the kubeconfig")
        return str(name) if name else None

    def _context_entry(self) -> dict[str, Any]:
        doc = self._config_doc or {}
        for c in doc.get("contexts") or []:
            if c.get("name") == self.context_name:
                return dict(c.get("context") or {})
        return {}

    @property
    def namespace(self) -> str:
        """-n, else the context's namespace, else the in-cluster ServiceAccount's, else "default"."""
        if self._namespace:
            return self._namespace
        try:
            ns = self._context_entry().get("namespace")
        except ClusterError:
            ns = None
        if ns:
            return str(ns)
        if self.in_cluster and SA_NAMESPACE_FILE.exists():
            return SA_NAMESPACE_FILE.read_text().strip() or "default"
        return "default"

    @property
    def namespace_explicit(self) -> bool:
        return bool(self._namespace)

    def kubeconfig_user(self) -> str | None:
        user = self._context_entry().get("user")
        return str(user) if user else None

    @cached_property
    def api(self) -> Any:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        logging.getLogger("urllib3").setLevel(logging.ERROR)
        cfg = client.Configuration()
        try:
            if self._config_doc is None:
                if not self.in_cluster:
                    raise ClusterError(
                        "no kubeconfig found (set --kubeconfig or $KUBECONFIG) and not running in a cluster"
                    )
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=os.pathsep.join(_kubeconfig_paths(self.kubeconfig)),
                    context=self.context_name,
                    client_configuration=cfg,
                    persist_config=False,
                )
        except ConfigException as e:
            raise ClusterError(f"invalid kubeconfig: {e}") from None
        cfg.retries = 1
        return client.ApiClient(cfg)

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    # ---- identity -----------------------------------------------------------------------------
    def current_user(self) -> str:
        """Who the API server says we are (SelfSubjectReview, authentication.k8s.io/v1); if the server
        does not offer it, the kubeconfig context's user name."""
        return self.current_identity()[0]

    def current_identity(self) -> tuple[str, list[str]]:
        """(username, groups) as the API server authenticates us (SelfSubjectReview); if the server
        does not offer it, the kubeconfig context's user name and no groups."""
        from kubernetes import client

        try:
            review = client.AuthenticationV1Api(self.api).create_self_subject_review(
                client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
            )
            data = self.api.sanitize_for_serialization(review)
            info = (data.get("status") or {}).get("userInfo") or {}
            if info.get("username"):
                return str(info["username"]), [str(g) for g in info.get("groups") or []]
        except Exception as e:  # noqa: BLE001 - an old server or no permission: fall back to the kubeconfig
            logging.getLogger(__name__).debug("SelfSubjectReview failed: %s", e)
        return self.kubeconfig_user() or "unknown", []

    # ---- objects ------------------------------------------------------------------------------
    def _co(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            raise ClusterError(api_error_message(e), e.status) from None
        except HTTPError as e:
            raise ClusterError(f"cannot reach the API server {self.server}: {e}") from None

    def get(self, res: Resource, name: str) -> dict[str, Any]:
        return dict(
            self._call(
                self._co().get_namespaced_custom_object,
                res.group,
                res.version,
                self.namespace,
                res.plural,
                name,
            )
        )

    def get_or_none(self, res: Resource, name: str) -> dict[str, Any] | None:
        try:
            return self.get(res, name)
        except ClusterError as e:
            if e.status == 404:
                return None
            raise

    def list(
        self, res: Resource, all_namespaces: bool = False, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        co = self._co()
        kw: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
        if all_namespaces:
            out = self._call(co.list_cluster_custom_object, res.group, res.version, res.plural, **kw)
        else:
            out = self._call(
                co.list_namespaced_custom_object, res.group, res.version, self.namespace, res.plural, **kw
            )
        return [dict(i) for i in out.get("items") or []]

    def create(self, res: Resource, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self._call(
                self._co().create_namespaced_custom_object,
                res.group,
                res.version,
                self.namespace,
                res.plural,
                body,
            )
        )

    def merge_patch(self, res: Resource, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """application/merge-patch+json (the client's default for custom objects)."""
        return dict(
            self._call(
                self._co().patch_namespaced_custom_object,
                res.group,
                res.version,
                self.namespace,
                res.plural,
                name,
                patch,
            )
        )

    # ---- waiting ------------------------------------------------------------------------------
    def wait(
        self, res: Resource, name: str, check: Callable[[dict[str, Any] | None], T | None], timeout: float
    ) -> T:
        """Until check(object or None) returns something other than None, on a watch of that one
        object (re-listing when the watch expires). Raises WaitTimeout with the last object seen."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        co = self._co()
        deadline = time.monotonic() + timeout
        selector = f"metadata.name={name}"
        last: dict[str, Any] | None = None
        rv: str | None = None
        while True:
            if rv is None:  # (re)list: current state + a resourceVersion to watch from
                lst = self._call(
                    co.list_namespaced_custom_object,
                    res.group,
                    res.version,
                    self.namespace,
                    res.plural,
                    field_selector=selector,
                )
                items = lst.get("items") or []
                last = dict(items[0]) if items else None
                rv = str((lst.get("metadata") or {}).get("resourceVersion") or "") or None
                result = check(last)
                if result is not None:
                    return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(last)
            w = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for ev in w.stream(  # type: ignore[no-untyped-call]
                    co.list_namespaced_custom_object,
                    res.group,
                    res.version,
                    self.namespace,
                    res.plural,
                    field_selector=selector,
                    resource_version=rv,
                    timeout_seconds=max(1, math.ceil(remaining)),
                    _request_timeout=(10, remaining + 10),
                ):
                    obj = ev.get("raw_object") or ev.get("object")
                    if ev.get("type") == "BOOKMARK":
                        continue
                    if isinstance(obj, dict):
                        rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    last = (
                        None if ev.get("type") == "DELETED" else dict(obj) if isinstance(obj, dict) else last
                    )
                    result = check(last)
                    if result is not None:
                        return result
                    if time.monotonic() >= deadline:
                        raise WaitTimeout(last)
            except ApiException as e:
                if e.status != 410:
                    raise ClusterError(api_error_message(e), e.status) from None
                rv = None  # expired: list again
            except HTTPError:
                rv = None  # connection dropped or read timeout: list again (bounded by the deadline)
            finally:
                w.stop()  # type: ignore[no-untyped-call]
            if time.monotonic() >= deadline:
                raise WaitTimeout(last)
