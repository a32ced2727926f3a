"""API access for ``kubectl models``: kubeconfig/context/namespace like kubectl, who the user is,
get/list/create/merge-patch of our objects and routes, and deadline-bound waits on a watch.

The requests go over :mod:`.apiserver` (the standard library's HTTP: no kubernetes client to load
before the first request) when the kubeconfig's credentials allow it, else through the kubernetes
client (:mod:`.kube_client`: exec plugins, auth-providers, proxies, in-cluster). Nothing is loaded
before the first request: ``--help`` and ``register`` without ``--apply`` never need it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from modelversioning.api.wire import MODELENDPOINT, MODELVERSION
from modelversioning.api.wire import Resource as Resource
from modelversioning.cli.models.errors import ClusterError as ClusterError

if TYPE_CHECKING:
    from modelversioning.cli.models.apiserver import HttpApi
    from modelversioning.cli.models.kube_client import ClientApi

T = TypeVar("T")

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


MODELVERSIONS, MODELENDPOINTS = MODELVERSION, MODELENDPOINT
_DIRS = "_dirs"  # in the merged kubeconfig: {"users"|"clusters": {name: directory of its file}}


def route_resource(router_name: str) -> Resource | None:
    """The route object kind written for spec.routing.router (None for a router that writes none)."""
    from modelversioning.render.routers import get_router

    return get_router(router_name).identity.route


class WaitTimeout(Exception):
    def __init__(self, last: dict[str, Any] | None) -> None:
        super().__init__("timed out")
        self.last = last


def _kubeconfig_paths(explicit: str | None) -> list[str]:
    raw = explicit or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return [os.path.expanduser(p) for p in raw.split(os.pathsep) if p]


class Cluster:
    """One kubeconfig + context + namespace, resolved the way kubectl resolves them."""

    def __init__(
        self,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
        impersonate: tuple[str, tuple[str, ...]] | None = None,
        http: bool = False,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self._namespace = namespace
        # (user, groups): every request carries Impersonate-User/-Group (the in-cluster web view acting
        # as its viewer); the credentials' own identity must be allowed to impersonate exactly them
        self.impersonate = impersonate
        self.http = http  # in a pod: our HTTP client with the ServiceAccount (not the kubernetes client)

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
                merged[_DIRS] = {"users": {}, "clusters": {}}  # where each entry's relative paths start
            for key in ("contexts", "users", "clusters"):
                have = {i.get("name") for i in merged[key]}
                new = [i for i in doc.get(key) or [] if i.get("name") not in have]
                merged[key] += new
                for entry in new if key != "contexts" else ():
                    merged[_DIRS][key].setdefault(entry.get("name"), os.path.dirname(os.path.abspath(p)))
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

    def _named(self, key: str, name: Any) -> tuple[dict[str, Any], str]:
        """The `users`/`clusters` entry called `name` ({} if none) and the directory of its file."""
        doc = self._config_doc or {}
        for item in doc.get(key) or []:
            if item.get("name") == name:
                return dict(item.get(key[:-1]) or {}), doc[_DIRS][key].get(name, "")
        return {}, ""

    @cached_property
    def _api(self) -> HttpApi | ClientApi:
        """Plain HTTP(S) when the kubeconfig's credentials allow it, else the kubernetes client."""
        from modelversioning.cli.models import (
            apiserver,
            kube_client,  # (light: it loads the client when connecting)
        )

        if self._config_doc is None:
            if not self.in_cluster:
                raise ClusterError(
                    "no kubeconfig found (set --kubeconfig or $KUBECONFIG) and not running in a cluster"
                )
            if self.impersonate is None and not self.http:
                return kube_client.connect(None, None)
            creds: apiserver.Credentials | None = apiserver.in_cluster_credentials()
        else:
            creds = None
            ctx = self._context_entry()
            if ctx:
                cluster, cluster_dir = self._named("clusters", ctx.get("cluster"))
                user, user_dir = self._named("users", ctx.get("user"))
                creds = apiserver.credentials(cluster, user, cluster_dir, user_dir)
        if creds is not None and self.impersonate is not None:
            user_name, groups = self.impersonate
            creds = dataclasses.replace(creds, impersonate_user=user_name, impersonate_groups=groups)
        if creds is not None:
            try:
                return apiserver.HttpApi(creds)
            except (OSError, ValueError) as e:  # e.g. a CA that is no PEM: the client says what is wrong
                if self.impersonate is not None:
                    raise ClusterError(f"cannot use the kubeconfig's credentials: {e}") from None
        if self.impersonate is not None or self.http:  # the kubernetes client's path: no impersonation
            raise ClusterError("impersonation needs a kubeconfig with a token or a client certificate")
        return kube_client.connect(_kubeconfig_paths(self.kubeconfig), self.context_name)

    @property
    def server(self) -> str:
        return self._api.server

    # ---- identity -----------------------------------------------------------------------------
    def current_user(self) -> str:
        """Who the API server says we are (SelfSubjectReview, authentication.k8s.io/v1); if the server
        does not offer it, the kubeconfig context's user name."""
        return self.current_identity()[0]

    def current_identity(self) -> tuple[str, list[str]]:
        """(username, groups) as the API server authenticates us (SelfSubjectReview); if the server
        does not offer it, the kubeconfig context's user name and no groups."""
        try:
            data = self._api.self_subject_review()
            info = (data.get("status") or {}).get("userInfo") or {}
            if info.get("username"):
                return str(info["username"]), [str(g) for g in info.get("groups") or []]
        except Exception as e:  # noqa: BLE001 - an old server or no permission: fall back to the kubeconfig
            logging.getLogger(__name__).debug("SelfSubjectReview failed: %s", e)
        return self.kubeconfig_user() or "unknown", []

    def may(self, verb: str, res: Resource, namespace: str) -> str:
        """ "" when the API server says the caller may ``verb`` ``res`` in ``namespace``
        (SelfSubjectAccessReview: the caller's own authority, asked before a write for someone), else
        why not. The write itself still goes with the caller's credentials: RBAC decides it again."""
        attrs = {"namespace": namespace, "verb": verb, "group": res.group, "resource": res.plural}
        try:
            st = self._api.self_subject_access_review(attrs).get("status") or {}
        except ClusterError as e:
            return f"cannot ask whether you may {verb} {res.qualified} ({e.message})"
        if st.get("allowed") is True and not st.get("denied"):
            return ""
        why = str(st.get("reason") or st.get("evaluationError") or "").strip()
        return f"you may not {verb} {res.qualified} in {namespace}" + (f" ({why})" if why else "")

    def subject_may(self, user: str, groups: Sequence[str], verb: str, res: Resource, namespace: str) -> bool:
        """Whether the API server says ``user`` in ``groups`` may ``verb`` ``res`` in ``namespace``
        (a SubjectAccessReview, asked with this Cluster's own credentials)."""
        attrs = {"namespace": namespace, "verb": verb, "group": res.group, "resource": res.plural}
        api = self._api
        if not hasattr(api, "subject_access_review"):
            raise ClusterError("SubjectAccessReview needs a kubeconfig with a token or a client certificate")
        st = api.subject_access_review(attrs, user, groups).get("status") or {}
        return st.get("allowed") is True and not st.get("denied")

    # ---- objects ------------------------------------------------------------------------------
    def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self._api.get(res, namespace or self.namespace, name)

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
        out = self._api.list(res, None if all_namespaces else self.namespace, label_selector)
        return [dict(i) for i in out.get("items") or []]

    def create(self, res: Resource, body: dict[str, Any]) -> dict[str, Any]:
        return self._api.create(res, self.namespace, body)

    def merge_patch(
        self, res: Resource, name: str, patch: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """application/merge-patch+json (in ``namespace``, else the context's)."""
        return self._api.merge_patch(res, namespace or self.namespace, name, patch)

    def list_from(self, res: Resource, namespace: str | None) -> tuple[Sequence[dict[str, Any]], str]:
        """Every object of ``res`` in ``namespace`` (None: all namespaces) and the list's
        resourceVersion, to watch from (the web view's shared cache, ui/cache.py)."""
        out = self._api.list(res, namespace)
        rv = str((out.get("metadata") or {}).get("resourceVersion") or "")
        return [dict(i) for i in out.get("items") or []], rv

    def watch_from(
        self, res: Resource, namespace: str | None, resource_version: str, seconds: int
    ) -> Iterator[dict[str, Any]]:
        """The watch events of ``res`` from ``resource_version`` until the server ends the watch
        (after ``seconds``); WatchExpired (410) and WatchBroken as the API's watch raises them."""
        return self._api.watch(res, namespace, "", resource_version, seconds, seconds + 30)

    # ---- waiting ------------------------------------------------------------------------------
    def wait(
        self, res: Resource, name: str, check: Callable[[dict[str, Any] | None], T | None], timeout: float
    ) -> T:
        """Until check(object or None) returns something other than None, on a watch of that one
        object (re-listing when the watch expires). Raises WaitTimeout with the last object seen."""
        from modelversioning.cli.models.apiserver import WatchBroken, WatchExpired

        api, ns = self._api, self.namespace
        deadline = time.monotonic() + timeout
        selector = f"metadata.name={name}"
        last: dict[str, Any] | None = None
        rv: str | None = None
        while True:
            if rv is None:  # (re)list: current state + a resourceVersion to watch from
                lst = api.list(res, ns, field_selector=selector)
                items = lst.get("items") or []
                last = dict(items[0]) if items else None
                rv = str((lst.get("metadata") or {}).get("resourceVersion") or "") or None
                result = check(last)
                if result is not None:
                    return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(last)
            try:
                for ev in api.watch(
                    res, ns, selector, rv or "", max(1, math.ceil(remaining)), remaining + 10
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
            except WatchExpired:
                rv = None  # expired: list again
            except WatchBroken:
                rv = None  # connection dropped or read timeout: list again (bounded by the deadline)
            if time.monotonic() >= deadline:
                raise WaitTimeout(last)
