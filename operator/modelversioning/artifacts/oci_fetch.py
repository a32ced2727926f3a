"""``oci://`` artifacts: fetch the pinned manifest, verify it, then stream, verify and lay out its layers.

Order of work, each step trusting only what the step before verified:

1. the URI must pin a digest (``oci://host/repo[:tag]@sha256:<hex>``, else ``TagWithoutDigest``), and
   ``artifact.sha256`` must be that digest;
2. the manifest is read by digest (at most ``MAX_MANIFEST_BYTES``) and its bytes must hash to it
   (``ManifestDigestMismatch``) before it is parsed;
3. its layout (:mod:`~modelversioning.artifacts.oci_layout`) and the limits are checked before any
   layer is fetched: at most ``min(MAX_OCI_LAYERS, maxFiles)`` layers, their declared sizes within
   ``maxTotalBytes`` and equal to ``spec.artifact.sizeBytes`` when it is given (``SizeMismatch``);
4. each layer is streamed once: hashed as it passes and, at the same time, written or unpacked into a
   temporary directory (:mod:`~modelversioning.artifacts.oci_extract`); a layer that does not hash to
   its descriptor's digest is ``LayerDigestMismatch`` and nothing is laid out. Without a destination
   (the operator's own verification) the files are only hashed, so ``status.artifact`` can list them.

The :class:`~modelversioning.artifacts.results.Digest` of an ``oci://`` artifact is the manifest
digest (what ``artifact.sha256`` is, so approvals and the registry's memory bind the manifest), with
the laid-out files as its entries and ``content_digest``: the digest those files would have as a
directory (:mod:`~modelversioning.artifacts.manifest`), comparable with a local copy.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.classify import classified_error
from modelversioning.artifacts.credentials import StoreAccess, bind_credentials, store_access
from modelversioning.artifacts.dest_writer import DestWriter
from modelversioning.artifacts.errors import ArtifactError, Reason
from modelversioning.artifacts.hashing import ProgressCallback
from modelversioning.artifacts.limits import MAX_OCI_LAYERS, check_total, limit_exceeded
from modelversioning.artifacts.manifest import manifest_digest
from modelversioning.artifacts.oci_extract import LayerReader, Tree, unpack_tar
from modelversioning.artifacts.oci_layout import Layout, plan_layout, unsupported
from modelversioning.artifacts.oci_registry import Registry
from modelversioning.artifacts.policy import check_uri
from modelversioning.artifacts.redact import redact_text, redact_uri
from modelversioning.artifacts.results import Digest
from modelversioning.domain import oci_ref
from modelversioning.domain.oci_ref import OciRef


def pinned_ref(uri: str, shown: str) -> OciRef:
    """The reference of a pinned ``oci://`` URI; TagWithoutDigest (or URIRefused: malformed)."""
    try:
        ref = oci_ref.parse(uri)
    except oci_ref.ReferenceError as e:
        raise ArtifactError(Reason.URI_REFUSED, f"{shown}: {Reason.URI_REFUSED.value}: {e}") from None
    if ref.digest is None:
        reason = Reason.TAG_WITHOUT_DIGEST
        raise ArtifactError(reason, f"{reason.value}: {oci_ref.tag_without_digest(uri)}")
    return ref


def check_expected(uri: str, expected: str, shown: str) -> None:
    """``artifact.sha256`` of an ``oci://`` artifact is the manifest digest its URI pins."""
    ref = pinned_ref(uri, shown)
    if ref.digest_hex != expected:
        reason = Reason.DIGEST_MISMATCH
        raise ArtifactError(
            reason,
            f"{shown}: {reason.value}: artifact.sha256 ({expected}) is not the manifest digest the URI pins "
            f"({ref.digest}); for oci:// they are the same",
        )


def _verified_manifest(registry: Registry, ref: OciRef, shown: str) -> Layout:
    body, content_type = registry.manifest(str(ref.digest))
    found = "sha256:" + hashlib.sha256(body).hexdigest()
    if found != ref.digest:
        reason = Reason.MANIFEST_DIGEST_MISMATCH
        raise ArtifactError(
            reason,
            f"{shown}: {reason.value}: the registry's manifest does not hash to the pinned {ref.digest}; "
            "nothing was fetched from it",
        )
    try:
        doc = json.loads(body)
    except ValueError:
        raise unsupported(shown, "the manifest is not JSON") from None
    return plan_layout(doc, content_type, shown)


def _check_limits(layout: Layout, policy: ArtifactPolicy, shown: str, expected_size: int | None) -> None:
    cap = min(MAX_OCI_LAYERS, policy.max_files)
    if len(layout.layers) > cap:
        raise limit_exceeded(shown, f"the manifest names {len(layout.layers)} layers (at most {cap})")
    check_total(shown, layout.size, policy, None)
    if expected_size is not None and layout.size != expected_size:
        reason = Reason.SIZE_MISMATCH
        raise ArtifactError(
            reason,
            f"{shown}: {reason.value}: the manifest's layers are {layout.size} bytes, "
            f"spec.artifact.sizeBytes is {expected_size}",
        )


class _Progress:
    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0
        self.lock = threading.Lock()
        if callback:
            callback(0, total)

    def add(self, n: int) -> None:
        with self.lock:
            self.done += n
            if self.callback:
                self.callback(self.done, self.total)


def oci_digest(
    uri: str,
    access: StoreAccess,
    policy: ArtifactPolicy,
    *,
    deadline: float,
    shown: str,
    writer: DestWriter | None = None,
    expected_size: int | None = None,
    progress: ProgressCallback | None = None,
) -> Digest:
    """Verify (and with ``writer``, lay out) the artifact; see the module docstring."""
    ref = pinned_ref(uri, shown)
    with Registry(ref, access, policy, deadline, shown) as registry:
        layout = _verified_manifest(registry, ref, shown)
        _check_limits(layout, policy, shown, expected_size)
        root = writer.prepare_tree() if writer is not None else None
        tree = Tree(root, policy, shown, overlay=layout.overlay)
        counter = _Progress(progress, layout.size)
        for layer in layout.layers:
            with registry.blob(layer.digest) as read:
                reader = LayerReader(
                    read, layer, shown=shown, policy=policy, deadline=deadline, progress=counter.add
                )
                if layer.kind == "file":
                    tree.write(layer.path, layer.index, reader.read)
                    reader.verify()
                else:
                    unpack_tar(reader, tree, shown)
    entries = tree.entries()
    if not entries:
        raise unsupported(shown, f"the {layout.name} layout laid out no file")
    if writer is not None:
        writer.rels = [e.path for e in entries]
    return Digest(
        str(ref.digest_hex),
        "directory",
        layout.size,
        len(entries),
        tuple(entries),
        layout=layout.name,
        content_digest=manifest_digest((e.path, e.sha256) for e in entries),
        skipped_links=tree.skipped_links,
        io_signature=tree.io_signature(),
    )


@dataclass(frozen=True)
class Resolved:
    """A tag resolved to its manifest: what ``kubectl models register`` records."""

    uri: str  # pinned: oci://host/repo[:tag]@sha256:<hex>
    sha256: str  # the manifest digest (hex)
    size_bytes: int  # the layers' declared sizes
    layout: str
    layers: int


def resolve(
    uri: str,
    access: StoreAccess,
    policy: ArtifactPolicy,
    *,
    deadline: float,
    shown: str,
) -> Resolved:
    """The manifest ``uri`` names now (by tag, or by digest: then checked), verified and planned, but
    no layer fetched. The digest is computed here from the bytes, never taken from a header."""
    try:
        ref = oci_ref.parse(uri)
    except oci_ref.ReferenceError as e:
        raise ArtifactError(Reason.URI_REFUSED, f"{shown}: {Reason.URI_REFUSED.value}: {e}") from None
    with Registry(ref, access, policy, deadline, shown) as registry:
        if ref.digest is not None:
            layout = _verified_manifest(registry, ref, shown)
            digest = str(ref.digest_hex)
        else:
            body, content_type = registry.manifest(ref.tag or "latest")
            digest = hashlib.sha256(body).hexdigest()
            try:
                doc = json.loads(body)
            except ValueError:
                raise unsupported(shown, "the manifest is not JSON") from None
            layout = plan_layout(doc, content_type, shown)
    _check_limits(layout, policy, shown, None)
    return Resolved(ref.pinned(digest), digest, layout.size, layout.name, len(layout.layers))


def resolve_reference(
    uri: str,
    *,
    policy: ArtifactPolicy | None = None,
    secret_data: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Resolved:
    """:func:`resolve` with the URI policy and the credentials applied, as ``verify_artifact`` does
    (``kubectl models register``: the default policy allows only ``oci://``). Raises ArtifactError."""
    policy = policy or ArtifactPolicy(allowed_schemes=["oci"])
    shown = redact_uri(uri)
    access = None
    try:
        refusal = check_uri(uri, policy)
        if refusal:
            raise ArtifactError(Reason.URI_REFUSED, f"{shown}: {Reason.URI_REFUSED.value}: {refusal}")
        access = bind_credentials(uri, store_access("oci", secret_data, env=env), policy, env)
        return resolve(uri, access, policy, deadline=time.monotonic() + policy.timeout_seconds, shown=shown)
    except ArtifactError as e:
        secrets = access.secret_values if access else frozenset()
        raise ArtifactError(e.reason, redact_text(e.message, secrets), transient=e.transient) from None
    except Exception as e:  # the network, the resolver, the policy inside the client
        error = classified_error(e, shown)
        secrets = access.secret_values if access else frozenset()
        raise ArtifactError(
            error.reason, redact_text(error.message, secrets), transient=error.transient
        ) from None


__all__ = ["Resolved", "check_expected", "oci_digest", "pinned_ref", "resolve", "resolve_reference"]
