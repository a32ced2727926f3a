"""Is a verified artifact still at its URI? A listing, never the bytes (rollback readiness, issue #28).

``probe_artifact`` runs in the verifier's worker process (``runner.probe_in_child``), under the same URI
policy, credentials rules and limits as a verification: a URI the operator may not fetch it may not
probe either (link-local, metadata and private addresses refused at connect time, ``file://`` only
under the policy's roots, a Secret's credentials only to the hosts it names). It asks what
verification's first step asks (``listing.plan_reading``): an http(s) HEAD (``fs.info``), a file's
stat, an object store's listing of the prefix (page by page, stopping at ``artifacts.maxFiles`` + 1);
and compares the total size and the file count with what the verification recorded
(status.artifact.sizeBytes and .files). The bytes are not read, so a store that kept the size but
changed the content is not seen here (the init container of the next pod, and a re-verification,
see that: ``DigestMismatch``).

States (``api.wire.PROBE_*``): Present, Missing (nothing there), Changed (a different size or file
count), Unreachable (the store did not answer, refused the credentials, or a limit was reached).
``oci://`` is not probed (the registry's manifest by digest would need the OCI client's token dance;
not done): the result is Present with a message saying so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from modelversioning.api import wire as W
from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.classify import classified_error
from modelversioning.artifacts.credentials import CredentialsError, bind_credentials, store_access
from modelversioning.artifacts.errors import ArtifactError, Reason
from modelversioning.artifacts.listing import plan_reading
from modelversioning.artifacts.policy import check_uri
from modelversioning.artifacts.redact import redact_text, redact_uri


@dataclass(frozen=True)
class ProbeResult:
    state: str  # wire.PROBE_*
    message: str  # safe to show (no credentials)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "message": self.message}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeResult:
        state = str(d["state"])
        if state not in W.PROBE_STATES:
            raise ValueError(f"unknown probe state {state!r}")
        return cls(state, str(d.get("message") or "")[:1024])


def probe_artifact(
    uri: str,
    *,
    policy: ArtifactPolicy,
    secret_data: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    expected_size: int | None = None,
    expected_files: int | None = None,
) -> ProbeResult:
    """Is the artifact the verification recorded still at ``uri`` (see the module docstring)?"""
    shown = redact_uri(uri)
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme == "oci":
        return ProbeResult(W.PROBE_PRESENT, f"{shown}: oci:// artifacts are not probed")
    secrets = tuple(secret_data.values()) if secret_data else ()
    try:
        access = store_access(scheme, secret_data, env=env)
        refusal = check_uri(uri, policy, endpoint_url=access.endpoint_url)
        if refusal:
            return ProbeResult(W.PROBE_UNREACHABLE, refusal if shown in refusal else f"{shown}: {refusal}")
        access = bind_credentials(uri, access, policy, env)
        deadline = time.monotonic() + policy.timeout_seconds
        plan = plan_reading(uri, access, policy, deadline, None)
    except CredentialsError as e:
        return ProbeResult(W.PROBE_UNREACHABLE, redact_text(f"{shown}: {e}", secrets))
    except (ArtifactError, OSError, ValueError) as e:
        # as a verification classifies it (a 404, NoSuchKey, ENOENT: NotFound; a refused connection
        # that fsspec reports as FileNotFoundError is a connection problem, not a missing artifact)
        err = e if isinstance(e, ArtifactError) else classified_error(e, shown)
        msg = redact_text(err.message if shown in err.message else f"{shown}: {err.message}", secrets)
        return ProbeResult(W.PROBE_MISSING if err.reason is Reason.NOT_FOUND else W.PROBE_UNREACHABLE, msg)
    files = len(plan.entries)
    sizes = [e.size for e in plan.entries]
    size = sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None
    if expected_files is not None and files != expected_files:
        return ProbeResult(W.PROBE_CHANGED, f"{shown}: {files} files there, {expected_files} verified")
    if expected_size is not None and size is not None and size != expected_size:
        return ProbeResult(W.PROBE_CHANGED, f"{shown}: {size} bytes there, {expected_size} verified")
    return ProbeResult(W.PROBE_PRESENT, f"{shown}: present")
