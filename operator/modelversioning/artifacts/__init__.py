"""Model artifacts: URI policy, credentials by reference, and streaming sha256 verification.

Digest format (part of the API; details and recipes in :mod:`modelversioning.artifacts.manifest`):

* a file: ``sha256(bytes)``, as printed by ``sha256sum``;
* a directory/prefix: ``sha256(manifest)``, where the manifest has one line per file,
  ``"<relative/posix/path> <sha256hex>\\n"``, sorted by path (code point order), UTF-8;
* ``oci://host/repo[:tag]@sha256:<hex>``: the OCI manifest's digest (the URI pins it).

Entry points::

    check_uri(uri, policy, *, endpoint_url=None) -> str | None           # refusal or None
    storage_options(scheme, secret_data=None, *, env=None) -> dict        # fsspec options
    verify_artifact(uri, expected_sha256, *, policy=None, secret_data=None, env=None,
                    progress=None, dest=None, expected_size=None, trust=None) -> VerifyResult
                                                      # trust: TrustMaterial (artifacts.signature)
    verify_in_child(uri, expected_sha256, *, policy, secret_data=None, expected_size=None)
                                                                          # memory-limited, killable
    delete_in_child(uri, expected_sha256, *, policy, secret_data=None, expected_size=None,
                    expected_files=None, dry_run=False) -> DeleteResult   # retention, same limits
    FairExecutor(workers, per_key).submit_for(namespace, fn, *args)       # per-namespace cap
    compute_digest(uri, *, policy=None, secret_data=None, env=None, progress=None) -> Digest
    resolve_reference(oci_uri, *, policy=None, secret_data=None, env=None) -> Resolved
                                                                          # a tag -> its manifest digest
    digest_local(path, *, max_workers=4, chunk_size=4 MiB, progress=None) -> Digest
    manifest_text(entries) / manifest_digest(entries)                     # (path, sha256) pairs

This package must not import kopf, kubernetes or the handler/CLI/render layers. Its names are
imported on first use, so importing one module of it (or one name) loads only what that needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelversioning.artifacts.classify import classify_exception
    from modelversioning.artifacts.credentials import (
        CredentialsError,
        StoreAccess,
        storage_options,
        store_access,
    )
    from modelversioning.artifacts.errors import TRANSIENT_REASONS, ArtifactError, Reason
    from modelversioning.artifacts.hashing import ProgressCallback
    from modelversioning.artifacts.manifest import manifest_digest, manifest_text
    from modelversioning.artifacts.oci_fetch import Resolved, resolve_reference
    from modelversioning.artifacts.policy import check_address, check_uri, endpoint_for
    from modelversioning.artifacts.redact import redact_text, redact_uri
    from modelversioning.artifacts.results import Digest, FileDigest, VerifyResult
    from modelversioning.artifacts.runner import FairExecutor, delete_in_child, verify_in_child
    from modelversioning.artifacts.signature import (
        SignatureCheck,
        TrustEntry,
        TrustMaterial,
        signature_location,
    )
    from modelversioning.artifacts.verify import compute_digest, digest_local, verify_artifact

# Where each name lives: a name is imported on first use (PEP 562), so a process that needs one part
# (the init container verifying an http:// artifact) never loads the others (oci://, the runner...).
_HOMES = {
    "classify": ("classify_exception",),
    "credentials": ("CredentialsError", "StoreAccess", "storage_options", "store_access"),
    "errors": ("TRANSIENT_REASONS", "ArtifactError", "Reason"),
    "hashing": ("ProgressCallback",),
    "manifest": ("manifest_digest", "manifest_text"),
    "oci_fetch": ("Resolved", "resolve_reference"),
    "policy": ("check_address", "check_uri", "endpoint_for"),
    "redact": ("redact_text", "redact_uri"),
    "results": ("Digest", "FileDigest", "VerifyResult"),
    "runner": ("FairExecutor", "delete_in_child", "verify_in_child"),
    "signature": ("SignatureCheck", "TrustEntry", "TrustMaterial", "signature_location"),
    "verify": ("compute_digest", "digest_local", "verify_artifact"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "TRANSIENT_REASONS",
    "ArtifactError",
    "CredentialsError",
    "Digest",
    "FairExecutor",
    "FileDigest",
    "ProgressCallback",
    "Reason",
    "Resolved",
    "SignatureCheck",
    "StoreAccess",
    "TrustEntry",
    "TrustMaterial",
    "VerifyResult",
    "check_address",
    "check_uri",
    "classify_exception",
    "compute_digest",
    "delete_in_child",
    "digest_local",
    "endpoint_for",
    "manifest_digest",
    "manifest_text",
    "redact_text",
    "redact_uri",
    "resolve_reference",
    "signature_location",
    "storage_options",
    "store_access",
    "verify_artifact",
    "verify_in_child",
]
