"""What an endpoint reconcile makes of inputs that rarely change between two of its reconciles: its
ModelVersions (validated, as facts) and its variants' slots (rendered), each made once per distinct input.

A weight change re-runs the whole reconcile, and the route write waited for what did not change: the
two ModelVersions read and validated again, and the two slots' Deployments rendered again to know their
names (a hash of the pod template: ~3 KB of canonical JSON, hashed, which also lets other threads take
the GIL in the middle of the reconcile).

- A version is kept with the exact bytes the cache held for it (``Store.blob``): equal bytes are the
  same object, so the same facts; any change to it (status, annotations, spec) is other bytes and is
  read and validated again. Nothing time-based is in the facts.
- A slot is kept under everything ``render_deployment`` reads, as JSON: the endpoint (name, namespace,
  uid), its whole spec but the variants' weights (no slot is made of a weight), the variant's name, the
  ModelVersion's spec, and the serving and artifact settings. A hit is a fresh copy (unpickled), as a
  render is: the caller may change it.

Both are bounded (the least recently used go first) and shared by the reconcile workers.
"""

from __future__ import annotations

import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from modelversioning.api import wire as R
from modelversioning.api.common import validation_message
from modelversioning.api.modelendpoint import ModelEndpointSpec, Variant
from modelversioning.api.modelversion_spec import ModelVersionSpec, ResolvedRuntime
from modelversioning.api.settings import ArtifactPolicy, Serving
from modelversioning.domain import conditions as cond
from modelversioning.domain.conditions import TRUE
from modelversioning.domain.endpoint_facts import VersionFacts
from modelversioning.domain.node_cache import oci_content
from modelversioning.domain.quarantine import quarantined
from modelversioning.handlers.endpoint_parse import init_trust_json
from modelversioning.handlers.store import Store
from modelversioning.render import EndpointRef, RenderError, render_deployment, with_resolved_runtime

SIZE = 256  # of each: versions (facts and spec), slots (~2.6 KB each, pickled)
_NO_WEIGHTS: Any = {"variants": {"__all__": {"weight"}}}

K = TypeVar("K")
V = TypeVar("V")
Version = tuple[VersionFacts | None, ModelVersionSpec | None, tuple[str, str] | None]  # facts, spec, problem
# ..., its init --trust-json, an oci:// version's contentDigest (its init --node-cache-content-digest)
Render = Callable[[Variant, ModelVersionSpec, str | None, str], dict[str, Any]]


class Lru(Generic[K, V]):
    """A bounded map, safe across threads; the least recently used entry goes first."""

    def __init__(self, size: int = SIZE) -> None:
        self._size = size
        self._kept: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._kept.get(key)
            if value is not None:
                self._kept.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._kept[key] = value
            self._kept.move_to_end(key)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)

    def __len__(self) -> int:
        return len(self._kept)


def version_facts(body: dict[str, Any] | None, ns: str, mv_name: str) -> Version:
    """A variant's ModelVersion as facts and its validated spec, or why there is none."""
    if body is None:
        return None, None, (R.MISSING_VERSION, f"ModelVersion {mv_name} does not exist in namespace {ns}")
    try:
        spec = ModelVersionSpec.model_validate(body.get("spec") or {})
    except ValidationError as e:
        return None, None, (R.INVALID_VERSION, f"ModelVersion {mv_name} is invalid: {validation_message(e)}")
    st = body.get("status") or {}
    try:  # an explicit spec.runtime, else the catalog runtime it resolved to; neither: nothing to render
        spec = with_resolved_runtime(spec, _resolved(st))
    except RenderError:
        why = (cond.get(st.get("conditions"), R.RUNTIME_RESOLVED_CONDITION) or {}).get("message") or "pending"
        return (
            None,
            None,
            (R.RUNTIME_NOT_RESOLVED, f"ModelVersion {mv_name}: its runtime is not resolved ({why})"),
        )
    vc = cond.get(st.get("conditions"), "ArtifactVerified") or {}
    verified = vc.get("status") == TRUE and (st.get("artifact") or {}).get("digest") == spec.artifact.sha256
    facts = VersionFacts(
        name=mv_name,
        uid=str(body["metadata"].get("uid", "")),
        version=spec.version,
        digest=spec.artifact.sha256,
        verified=verified,
        verify_reason=str(vc.get("reason", "")),
        stage=st.get("stage"),
        revoked=(body["metadata"].get("annotations") or {}).get(R.REVOKED_ANNOTATION),
        quarantined=quarantined((body["metadata"].get("annotations") or {}).get(R.QUARANTINED_ANNOTATION)),
        trust_json=init_trust_json(st, spec.artifact.signature_uri),
        serving_digest=str(st.get("servingDigest") or ""),
        content_digest=oci_content(body),
    )
    return facts, spec, None


def _resolved(status: dict[str, Any]) -> ResolvedRuntime | None:
    raw = status.get("resolvedRuntime")
    try:
        return ResolvedRuntime.model_validate(raw) if raw else None
    except ValidationError:  # not what the operator writes: not resolved (never rendered)
        return None


class EndpointInputs:
    def __init__(self, size: int = SIZE) -> None:
        self._versions: Lru[tuple[str, str], tuple[bytes, Version]] = Lru(size)
        self._slots: Lru[tuple[Any, ...], bytes] = Lru(size)
        self.made = {"versions": 0, "slots": 0}  # how many were made (not taken from the cache)

    def version(self, store: Store, ns: str, mv_name: str) -> Version:
        """version_facts of the ModelVersion the cache holds now."""
        blob = store.blob("ModelVersion", ns, mv_name)
        kept = self._versions.get((ns, mv_name)) if blob is not None else None
        if kept is not None and kept[0] == blob:
            return kept[1]
        out = version_facts(store.get("ModelVersion", ns, mv_name), ns, mv_name)
        if blob is not None and store.blob("ModelVersion", ns, mv_name) == blob:  # what was read
            self._versions.put((ns, mv_name), (blob, out))
            self.made["versions"] += 1
        return out

    def renderer(
        self, ref: EndpointRef, spec: ModelEndpointSpec, serving: Serving, policy: ArtifactPolicy
    ) -> Render:
        """render_deployment(ref, spec, variant, version, serving, policy=policy, trust_json=...,
        content_digest=...), cached."""
        base = (
            ref,
            spec.model_dump_json(exclude=_NO_WEIGHTS),
            serving.model_dump_json(),
            policy.model_dump_json(),
        )

        def render(
            variant: Variant, version: ModelVersionSpec, trust_json: str | None, content_digest: str
        ) -> dict[str, Any]:
            key = (*base, variant.name, version.model_dump_json(), trust_json, content_digest)
            blob = self._slots.get(key)
            if blob is None:
                made = render_deployment(
                    ref, spec, variant, version, serving, policy=policy, trust_json=trust_json,
                    content_digest=content_digest,
                )  # fmt: skip
                blob = pickle.dumps(made, protocol=pickle.HIGHEST_PROTOCOL)
                self._slots.put(key, blob)
                self.made["slots"] += 1
            out: dict[str, Any] = pickle.loads(blob)  # noqa: S301 - our own bytes
            return out

        return render
