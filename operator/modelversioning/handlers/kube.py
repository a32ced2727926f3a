"""The few Kubernetes API calls the reconcilers make, behind one small class.

Writes are server-side apply with one field manager (children), merge patches
of status (our own objects) and Events. Reads come from the watch-fed Store;
the only direct GETs are Secrets (credentials, read at verification time).
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import json
import logging
import os
from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelversioning import metrics
from modelversioning.api.wire import CONFIGMAP as CONFIGMAP
from modelversioning.api.wire import DEPLOYMENT as DEPLOYMENT
from modelversioning.api.wire import EVENT as EVENT
from modelversioning.api.wire import MODEL as MODEL
from modelversioning.api.wire import MODELENDPOINT as MODELENDPOINT
from modelversioning.api.wire import MODELVERSION as MODELVERSION
from modelversioning.api.wire import POD as POD
from modelversioning.api.wire import SECRET as SECRET
from modelversioning.api.wire import SERVICE as SERVICE
from modelversioning.api.wire import Resource as Resource
from modelversioning.handlers.events import EventSink, Series, series_key
from modelversioning.render.routers import Router, all_routers

log = logging.getLogger(__name__)

FIELD_MANAGER = "modelversioning-operator"
Page = list[dict[str, Any]]  # one page of a LIST (named here: Kube.list shadows `list` in the class)


def route_resource(router: Router) -> Resource | None:
    """The API resource of a router's route objects (None for a router that writes none): each router
    module owns its identity, so adding a router needs no change here."""
    return router.identity.route


class _RouteResources(Mapping[str, Resource]):
    """router name -> resource of its route objects, for every registered router that writes one.
    Read from the router registry at each use, so a router registered after this module was imported
    (a test's) is watched, listed and written like the others."""

    def _now(self) -> dict[str, Resource]:
        return {r.name: res for r in all_routers() if (res := route_resource(r)) is not None}

    def __getitem__(self, name: str) -> Resource:
        return self._now()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())

    def items(self) -> ItemsView[str, Resource]:  # the registry read once, not once per key
        return self._now().items()

    def values(self) -> ValuesView[Resource]:
        return self._now().values()


ROUTE_RESOURCES: Mapping[str, Resource] = _RouteResources()
_BY_KIND = {r.kind: r for r in (DEPLOYMENT, SERVICE, SECRET, MODELVERSION, MODELENDPOINT, MODEL)}


def resource_of(kind: str) -> Resource:
    """The resource of an object we write: a child, one of ours, or a route object of any router."""
    found = _BY_KIND.get(kind) or next((r for r in ROUTE_RESOURCES.values() if r.kind == kind), None)
    if found is None:
        raise KeyError(kind)
    return found


class Conflict(Exception):
    pass


def _status_body(e: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(e.body) if e.body else {}
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def expected_api_error(e: BaseException) -> int | None:
    """The HTTP code of a failure a retry resolves by itself, None for any other failure (which needs
    a person): 409 (Conflict: an object changed meanwhile); 404 of a named object (deleted meanwhile,
    e.g. with its namespace; a 404 without a name is a resource type the API server does not serve,
    such as a missing CRD); 403 NamespaceTerminating (a create in a namespace being deleted). Looks
    through the exception's causes (Conflict wraps the ApiException)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, Conflict):
            return 409
        if isinstance(cur, ApiException):
            details = _status_body(cur).get("details") or {}
            causes = [c.get("reason") for c in details.get("causes") or [] if isinstance(c, dict)]
            if cur.status == 409:
                return 409
            if cur.status == 404 and details.get("name"):
                return 404
            if cur.status == 403 and "NamespaceTerminating" in causes:
                return 403
            return None
        cur = cur.__cause__ or cur.__context__
    return None


def status_merge_patch(status: dict[str, Any], old_status: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old_status` into `status`: every key we no longer
    report is null, at any depth of a map. A merge patch merges maps, so `effectiveWeights: {}` alone
    would leave every old variant's weight in place (a closed route kept reporting 100 %)."""
    return _merge_patch(old_status or {}, status)


def _merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in new.items():
        before = old.get(k)
        out[k] = _merge_patch(before, v) if isinstance(v, dict) and isinstance(before, dict) else v
    for k in old:
        if k not in new:
            out[k] = None
    return out


class PreconditionFailed(Conflict):
    """A write carried the UID of the object we observed (metadata.uid in an apply, or a delete's
    preconditions.uid) and the object of that name is gone or is another one now: deleted, and maybe
    re-created by someone else, since the watch showed it to us. Never written over; the reconcile
    retries (ChildApplyRetrying) and decides again from what the watch shows next."""


# Writes (requests other than GET, and Events) made in this context since counting_writes() began.
_WRITES: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("kube_writes", default=None)


@contextlib.contextmanager
def counting_writes() -> Iterator[list[int]]:
    """Count the writes made by this thread (context) in the block: [n]."""
    count = [0]
    token = _WRITES.set(count)
    try:
        yield count
    finally:
        _WRITES.reset(token)


def count_write() -> None:
    """Every write of Kube calls this (and so must a stand-in for Kube in tests)."""
    count = _WRITES.get()
    if count is not None:
        count[0] += 1


def load_api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = 16
    return client.ApiClient(cfg)


class Kube:
    def __init__(self, api: client.ApiClient, component: str = FIELD_MANAGER) -> None:
        self.api = api
        self.component = component
        self.events = EventSink(self._post_event)  # posted in order, off the reconcile workers
        self.series = Series()  # repeats of an Event raise its count (Kubernetes' Event series)

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str | None = None,
        query: list[tuple[str, Any]] | None = None,
    ) -> Any:
        if method != "GET":
            count_write()
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            if hasattr(self.api, "param_serialize"):  # kubernetes client >= 33 (new generator)
                # the body is JSON data already (dicts, lists, strings, numbers): the client's
                # sanitize_for_serialization would only copy it, field by field, before json.dumps
                m, url, hdrs, _, _ = self.api.param_serialize(
                    method=method,
                    resource_path=path,
                    query_params=query or [],
                    header_params=headers,
                    auth_settings=["BearerToken"],
                )
                resp = self.api.call_api(m, url, header_params=hdrs, body=body, _request_timeout=60)
                resp.read()  # type: ignore[no-untyped-call]
                if not 200 <= resp.status < 300:
                    raise ApiException(http_resp=resp)
                return json.loads(resp.data) if resp.data else {}
            return self.api.call_api(  # type: ignore[call-arg]  # older clients
                path,
                method,
                query_params=query or [],
                header_params=headers,
                body=body,
                response_type="object",
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=True,
                _request_timeout=60,
            )
        except ApiException as e:
            if e.status == 409:
                raise Conflict(f"{method} {path}: conflict") from e
            raise

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST: fails with Conflict when an object of that name exists (ours or not), so a child is
        never written over an object we did not create."""
        res = resource_of(obj["kind"])
        md = obj["metadata"]
        out = self._call("POST", res.path(md["namespace"]), obj, query=[("fieldManager", FIELD_MANAGER)])
        metrics.CHILD_WRITES.labels(obj["kind"], "create").inc()
        out.setdefault("apiVersion", obj["apiVersion"])
        out.setdefault("kind", obj["kind"])
        return dict(out)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of an object we control (the caller checked our controller reference);
        forced, so a hand edit of a field we set is put back. With metadata.uid (the UID of the object
        we observed as ours) the write is conditional: the API server refuses it when the object is
        gone (409: no object of that UID to apply to) or is another object now (422: metadata.uid is
        immutable); both raise PreconditionFailed, so a child deleted and re-created by someone else
        between gather and act is never taken over."""
        res = resource_of(obj["kind"])
        md = obj["metadata"]
        uid = md.get("uid")
        try:
            out = self._call(
                "PATCH",
                res.path(md["namespace"], md["name"]),
                obj,
                content_type="application/apply-patch+yaml",
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            )
        except Conflict as e:
            if uid:
                raise PreconditionFailed(f"{obj['kind']} {md['name']} (uid {uid}) is gone: {e}") from e
            raise
        except ApiException as e:
            if uid and e.status == 422 and "metadata.uid" in str(e.body or ""):
                raise PreconditionFailed(f"{obj['kind']} {md['name']} is no longer uid {uid}") from e
            raise
        metrics.CHILD_WRITES.labels(obj["kind"], "apply").inc()
        return dict(out)

    def delete(self, res: Resource, namespace: str, name: str, uid: str | None = None) -> bool:
        """DELETE (background propagation); with `uid`, only that object (preconditions.uid: an object
        re-created under the name by someone else meanwhile is left alone, PreconditionFailed)."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._call("DELETE", res.path(namespace, name), body)
        except Conflict as e:
            if uid:
                raise PreconditionFailed(f"{res.kind} {name} is no longer uid {uid}") from e
            raise
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        metrics.CHILD_WRITES.labels(res.kind, "delete").inc()
        return True

    def patch_status(
        self,
        res: Resource,
        namespace: str,
        name: str,
        status: dict[str, Any],
        old_status: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Merge-patch the status subresource; returns the object as the API server stored it."""
        patch = status_merge_patch(status, old_status)
        return dict(
            self._call(
                "PATCH",
                res.path(namespace, name, "status"),
                {"status": patch},
                content_type="application/merge-patch+json",
            )
        )

    def set_finalizers(
        self, res: Resource, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        """Merge-patch metadata.finalizers (all of them), checked against `resource_version`; returns
        the object as written."""
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        out: dict[str, Any] = self._call(
            "PATCH", res.path(namespace, name), body, content_type="application/merge-patch+json"
        )
        return out

    def annotate(
        self, res: Resource, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> dict[str, Any]:
        """Merge-patch metadata.annotations (None removes one); returns the object as written."""
        body = {"metadata": {"annotations": annotations}}
        out: dict[str, Any] = self._call(
            "PATCH", res.path(namespace, name), body, content_type="application/merge-patch+json"
        )
        return out

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """One LIST (used once at startup to fill the cache before reconciling anything), read in
        pages so that the decoded response never holds more than `page` full objects at once."""
        return [item for chunk in self.list_pages(res, namespace, label_selector) for item in chunk]

    def list_pages(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None, page: int = 250
    ) -> Iterator[Page]:
        """The LIST of `res` page by page (limit/continue); a page's items carry apiVersion/kind."""
        base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
        path = f"{base}/namespaces/{namespace}/{res.plural}" if namespace else f"{base}/{res.plural}"
        query: list[tuple[str, Any]] = [("labelSelector", label_selector)] if label_selector else []
        token = ""
        while True:
            more = [("continue", token)] if token else []
            out = self._call("GET", path, query=[*query, ("limit", page), *more])
            items = out.get("items") or []
            for item in items:  # items of a List carry no apiVersion/kind
                item["apiVersion"] = res.api_version
                item["kind"] = res.kind
            yield [dict(i) for i in items]
            token = str((out.get("metadata") or {}).get("continue") or "")
            if not token:
                return

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        data = self._call("GET", SECRET.path(namespace, name))
        raw = data.get("data") or {}
        # a binary value must not crash verification: it becomes U+FFFD, which the credentials
        # layer refuses (AccessDenied, permanent) only if it is a key it would use
        return {k: base64.b64decode(v).decode("utf-8", errors="replace") for k, v in raw.items()}

    def read_configmap(self, namespace: str, name: str) -> dict[str, str]:
        """A ConfigMap's data (binaryData decoded as UTF-8, as read_secret does)."""
        data = self._call("GET", CONFIGMAP.path(namespace, name))
        binary = {
            k: base64.b64decode(v).decode("utf-8", errors="replace")
            for k, v in (data.get("binaryData") or {}).items()
        }
        return {**binary, **(data.get("data") or {})}

    def event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        md = involved.get("metadata", {})
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        ev = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{md.get('name', 'object')}.", "namespace": md.get("namespace")},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": md.get("name"),
                "namespace": md.get("namespace"),
                "uid": md.get("uid"),
                "resourceVersion": md.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": os.environ.get("HOSTNAME", self.component),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        count_write()
        self.events.put(str(md.get("namespace") or "default"), ev)

    def _post_event(self, namespace: str, ev: dict[str, Any]) -> None:
        """POST a new Event, or count a repeat in the one posted before (an Event series): its count
        and lastTimestamp go up. One that expired meanwhile (404) is posted anew."""
        key = series_key(namespace, ev)
        seen = self.series.get(key)
        if seen is not None and seen[0]:
            name, count = seen
            patch = {"count": count + 1, "lastTimestamp": ev["lastTimestamp"]}
            try:
                self._call(
                    "PATCH", EVENT.path(namespace, name), patch, content_type="application/merge-patch+json"
                )
            except ApiException as e:
                if e.status != 404:
                    raise
            else:
                self.series.remember(key, name, count + 1)
                return
        out = self._call("POST", EVENT.path(namespace), ev) or {}
        self.series.remember(key, str((out.get("metadata") or {}).get("name") or ""), 1)
