"""Delete an artifact from storage (retention), under the same URI policy and credentials rules as
verification: a URI the operator may not fetch it may not delete either; ``http(s)`` artifacts cannot
be deleted (no protocol for it). A file or a directory/prefix (URI ending in ``/``) is removed whole.
Idempotent: an artifact that is already gone counts as deleted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts.backends import open_filesystem
from modelversioning.artifacts.credentials import CredentialsError, bind_credentials, store_access
from modelversioning.artifacts.errors import ArtifactError
from modelversioning.artifacts.policy import check_uri, resolve_file_path
from modelversioning.artifacts.redact import redact_text, redact_uri

DELETABLE_SCHEMES = frozenset({"file", "s3", "s3a", "gs", "gcs"})


@dataclass(frozen=True)
class DeleteResult:
    ok: bool
    message: str  # safe to show (no credentials)
    existed: bool = True


def delete_artifact(
    uri: str,
    policy: ArtifactPolicy,
    secret_data: Mapping[str, str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> DeleteResult:
    shown = redact_uri(uri)
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme not in DELETABLE_SCHEMES:
        return DeleteResult(
            False, f"{shown}: {scheme or 'this'}:// artifacts cannot be deleted by the operator"
        )
    try:
        access = store_access(scheme, secret_data, env=env)
        refusal = check_uri(uri, policy, endpoint_url=access.endpoint_url)
        if refusal:
            return DeleteResult(False, refusal if shown in refusal else f"{shown}: {refusal}")
        access = bind_credentials(uri, access, policy, env)
        fs = open_filesystem(access, policy, time.monotonic() + policy.timeout_seconds)
        path = resolve_file_path(uri).as_posix() if scheme == "file" else fs._strip_protocol(uri)
        recursive = uri.endswith("/")
        if not fs.exists(path):
            return DeleteResult(True, f"{shown} was already gone", existed=False)
        fs.rm(path.rstrip("/") if recursive else path, recursive=recursive)
        if fs.exists(path):
            return DeleteResult(False, f"{shown} still exists after the delete")
        return DeleteResult(True, f"{shown} deleted")
    except (ArtifactError, CredentialsError) as e:
        return DeleteResult(False, f"{shown}: {getattr(e, 'message', str(e))}")
    except (OSError, ValueError) as e:
        secrets = tuple(secret_data.values()) if secret_data else ()
        return DeleteResult(False, redact_text(f"{shown}: {type(e).__name__}: {e}", secrets))
