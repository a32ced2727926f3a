"""A small client of the OCI distribution API (one repository of one registry), over our aiohttp session.

Why not a library: see docs/design.md ("OCI artifacts"). In short, the HTTP client is the one every
other scheme uses (:func:`~modelversioning.artifacts.backends.http_client_factory`): the URI policy is
applied to every request (hosts, private networks, metadata addresses) and to every address the
resolver returns (DNS rebinding), every request runs under the verification's deadline, and we need
only four requests: ``GET /v2/<repo>/manifests/<reference>``, ``GET /v2/<repo>/blobs/<digest>``, the
token request of a Bearer challenge, and their redirects.

* Redirects are followed here (at most :data:`MAX_REDIRECTS`), not by aiohttp: every hop is a new
  request, so the policy checks it, and the ``Authorization`` header is only ever sent to the
  registry's own origin (a blob redirected to a storage host gets no credentials).
* Authentication (:mod:`~modelversioning.artifacts.oci_auth`): anonymous first; a 401 with a
  ``Basic`` challenge is answered with the docker config's credentials for this registry, a
  ``Bearer`` challenge with a token from the realm the registry names (asked with those credentials,
  or anonymously). The token, like the credentials, goes only to the registry.
* Bodies are bounded: a manifest to ``MAX_MANIFEST_BYTES``, a token answer to
  ``MAX_SMALL_BODY_BYTES``; a blob is read by the caller, chunk by chunk.

The client is synchronous for its callers (the hashing and unpacking code reads a blob like a file):
an event loop runs in a helper thread and every call waits for its coroutine, never past the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

import aiohttp
import yarl

from modelversioning.api.artifact_policy import ArtifactPolicy
from modelversioning.artifacts.backends import http_client_factory
from modelversioning.artifacts.credentials import StoreAccess
from modelversioning.artifacts.errors import ArtifactError, Reason
from modelversioning.artifacts.limits import (
    MAX_MANIFEST_BYTES,
    MAX_SMALL_BODY_BYTES,
    deadline_exceeded,
    limit_exceeded,
)
from modelversioning.artifacts.oci_auth import Challenge, RegistryCredential, parse_challenge
from modelversioning.artifacts.policy import host_allowed
from modelversioning.domain.oci_ref import OciRef

T = TypeVar("T")
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
ReadChunk = Callable[[int], bytes]


def registry_url(ref: OciRef, policy: ArtifactPolicy) -> str:
    """``https://<registry>`` (``http://`` for the registries in ``artifacts.plainHttpRegistries``)."""
    plain = [h for h in policy.plain_http_registries if h.strip()]
    scheme = "http" if plain and host_allowed(ref.host, plain) else "https"
    return f"{scheme}://{ref.registry}"


class Registry:
    """One repository of one registry, read with the credentials bound to it (see the module doc)."""

    def __init__(self, ref: OciRef, access: StoreAccess, policy: ArtifactPolicy, deadline: float, shown: str):
        self.ref = ref
        self.shown = shown
        self.policy = policy
        self.deadline = deadline
        self.origin = yarl.URL(registry_url(ref, policy))
        auths: dict[str, RegistryCredential] = access.options.get("auths") or {}
        self.credential = next(iter(auths.values()), None)
        self.authorization: str | None = None  # what the registry accepted (Basic or Bearer)
        self.secret_values: set[str] = set()  # tokens received (redacted from messages)
        # the requests themselves are http(s); hosts, networks and limits are the artifact policy's
        self._http_policy = policy.model_copy(update={"allowed_schemes": ["https", "http"]})
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="oci-registry", daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        try:
            factory = http_client_factory(self._http_policy, deadline)
            self._session = self._run(factory(auto_decompress=False))
        except BaseException:
            self.close()
            raise

    # ---- plumbing --------------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Wait for ``coro`` on the client's loop, never past the deadline."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(max(0.05, self.deadline - time.monotonic()) + 1.0)
        except TimeoutError:
            future.cancel()
            raise deadline_exceeded(self.shown, self.policy) from None

    def close(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                self._run(self._session.close())
            self._session = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, reason: Reason, detail: str, *, transient: bool | None = None) -> ArtifactError:
        return ArtifactError(reason, f"{self.shown}: {reason.value}: {detail}", transient=transient)

    # ---- requests --------------------------------------------------------------------------------
    async def _get(
        self, url: yarl.URL, headers: dict[str, str], method: str = "GET", data: bytes | None = None
    ) -> aiohttp.ClientResponse:
        """``method`` ``url``, following a GET's redirects here; ``Authorization`` only for the registry's
        origin (a push is never redirected: its answer is returned as it is)."""
        assert self._session is not None
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers, **{"Accept-Encoding": "identity"})
            if self.authorization and url.origin() == self.origin.origin():
                sent["Authorization"] = self.authorization
            resp = await self._session.request(method, url, headers=sent, data=data, allow_redirects=False)
            location = resp.headers.get("Location")
            if method != "GET" or resp.status not in REDIRECTS or not location:
                return resp
            resp.release()
            url = url.join(yarl.URL(location, encoded=True))
        raise self._fail(Reason.FETCH_FAILED, f"more than {MAX_REDIRECTS} redirects", transient=False)

    async def _open(
        self,
        path: str,
        accept: str | None = None,
        *,
        query: dict[str, str] | None = None,
        method: str = "GET",
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        url: yarl.URL | None = None,
    ) -> aiohttp.ClientResponse:
        """``method`` ``/v2/<repo>/<path>`` (or ``url``, of the registry) with authentication; a 2xx
        response (open), else an ArtifactError."""
        if url is None:
            url = self.origin.with_path(f"/v2/{self.ref.repository}/{path}", encoded=False)
            url = url.with_query(query) if query else url
        sent = dict(headers or {}, **({"Accept": accept} if accept else {}))
        resp = await self._get(url, sent, method, data)
        if resp.status == 401 and self._may_authenticate():
            challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            resp.release()
            await self._authenticate(challenge)
            resp = await self._get(url, sent, method, data)
        if 200 <= resp.status < 300:
            return resp
        status, text = resp.status, await _small_text(resp)
        resp.release()
        raise self._status_error(status, path, text, method)

    def _may_authenticate(self) -> bool:
        return self.authorization is None or self.authorization.startswith("Bearer ")

    def _status_error(self, status: int, path: str, text: str, method: str = "GET") -> ArtifactError:
        what = {"manifests": "manifest", "referrers": "referrers of"}.get(path.split("/", 1)[0], "blob")
        detail = f"the registry answered HTTP {status} for the {what} {path.split('/', 1)[-1]}"
        if text:
            detail += f" ({text})"
        if status in (401, 403):
            who = "with the credentials of artifact.secretRef" if self.credential else "anonymously"
            action = "pull" if method == "GET" else "push"
            return self._fail(Reason.ACCESS_DENIED, f"{detail}; it refused the {action} {who}")
        if status in (404, 410):
            return self._fail(Reason.NOT_FOUND, f"{detail}; it may not have been pushed yet", transient=True)
        return self._fail(Reason.FETCH_FAILED, detail, transient=True)

    async def _authenticate(self, challenge: Challenge | None) -> None:
        """Answer the registry's challenge: Basic with the credentials, Bearer with a realm token."""
        cred = self.credential
        if challenge is not None and challenge.scheme == "bearer" and challenge.params.get("realm"):
            if cred is not None and cred.token:
                self.authorization = f"Bearer {cred.token}"
                return
            token = await self._token(challenge, cred.basic if cred else None)
            self.secret_values.add(token)
            self.authorization = f"Bearer {token}"
            return
        if challenge is not None and challenge.scheme == "basic" and cred is not None and cred.basic:
            self.authorization = cred.basic
            return
        scheme = challenge.scheme if challenge else "none"
        why = "no credentials for it" if cred is None else "its credentials do not fit that challenge"
        raise self._fail(Reason.ACCESS_DENIED, f"the registry asks for authentication ({scheme}); {why}")

    async def _token(self, challenge: Challenge, basic: str | None) -> str:
        """A token from the realm named by the registry (the policy checks the realm like any URL)."""
        assert self._session is not None
        realm = yarl.URL(challenge.params["realm"])
        if realm.scheme not in ("http", "https") or not realm.host:
            raise self._fail(Reason.ACCESS_DENIED, "the registry's token realm is not an http(s) URL")
        query = {k: v for k, v in realm.query.items()}
        if challenge.params.get("service"):
            query["service"] = challenge.params["service"]
        query["scope"] = challenge.params.get("scope") or f"repository:{self.ref.repository}:pull"
        headers = {"Accept-Encoding": "identity"}
        if basic:
            headers["Authorization"] = basic
        async with self._session.get(realm.with_query(query), headers=headers, allow_redirects=False) as resp:
            text = await _read_capped(resp, MAX_SMALL_BODY_BYTES, lambda: "the token answer is too large")
            if resp.status in (401, 403):
                raise self._fail(
                    Reason.ACCESS_DENIED, f"the token service refused the credentials (HTTP {resp.status})"
                )
            if resp.status != 200:
                raise self._fail(
                    Reason.FETCH_FAILED, f"the token service answered HTTP {resp.status}", transient=True
                )
        try:
            doc = json.loads(text)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise self._fail(Reason.ACCESS_DENIED, "the token service's answer holds no token")
        return token

    # ---- the API ---------------------------------------------------------------------------------
    def manifest(self, reference: str, limit: int | None = None) -> tuple[bytes, str]:
        """(body, Content-Type) of the manifest ``reference`` (a digest or a tag), at most ``limit``
        bytes (default ``MAX_MANIFEST_BYTES``; else LimitExceeded)."""
        cap = MAX_MANIFEST_BYTES if limit is None else limit
        return self._small(f"manifests/{reference}", ", ".join(MANIFEST_TYPES), cap, "the manifest")

    def referrers(self, digest: str, artifact_type: str, limit: int) -> bytes | None:
        """The referrers API's image index of ``digest`` (at most ``limit`` bytes, else LimitExceeded),
        or None: the registry has no referrers API (it answers 404, as distribution 2.8 does)."""
        try:
            body, _ = self._small(
                f"referrers/{digest}",
                INDEX_TYPE,
                limit,
                "the referrers index",
                {"artifactType": artifact_type},
            )
        except ArtifactError as e:
            if e.reason is Reason.NOT_FOUND:
                return None
            raise
        return body

    def _small(
        self, path: str, accept: str, limit: int, what: str, query: dict[str, str] | None = None
    ) -> tuple[bytes, str]:
        async def get() -> tuple[bytes, str]:
            resp = await self._open(path, accept, query=query)
            try:
                too_large = f"{what} is larger than {limit} bytes"
                body = await _read_capped(resp, limit, lambda: too_large)
                return body, resp.headers.get("Content-Type", "").split(";", 1)[0].strip()
            except BaseException:
                resp.close()  # the rest is dropped, never read
                raise
            finally:
                resp.release()

        try:
            return self._run(get())
        except ArtifactError as e:
            if e.reason is Reason.LIMIT_EXCEEDED and not e.message.startswith(self.shown):
                raise limit_exceeded(self.shown, e.message) from None
            raise

    def small_blob(self, digest: str, limit: int) -> bytes:
        """The blob ``digest``, at most ``limit`` bytes (else LimitExceeded); not checked here."""
        return self._small(f"blobs/{digest}", "application/octet-stream", limit, f"the blob {digest}")[0]

    # ---- pushing (kubectl models register --sign-key: a signature as a referrer) --------------------------
    def push_blob(self, data: bytes) -> str:
        """Upload ``data`` (monolithic: POST an upload, PUT its bytes); its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()

        async def push() -> None:
            resp = await self._open("blobs/uploads/", method="POST", data=b"")
            location = resp.headers.get("Location", "")
            resp.release()
            if not location:
                raise self._fail(Reason.FETCH_FAILED, "the registry gave no upload location", transient=True)
            url = self.origin.join(yarl.URL(location, encoded=True))
            if url.origin() != self.origin.origin():
                raise self._fail(Reason.URI_REFUSED, "the registry's upload location is another origin")
            sep = "&" if url.raw_query_string else "?"
            url = yarl.URL(f"{url}{sep}digest={digest.replace(':', '%3A')}", encoded=True)
            headers = {"Content-Type": "application/octet-stream"}
            done = await self._open("blobs/uploads/", method="PUT", data=data, headers=headers, url=url)
            done.release()

        self._run(push())
        return digest

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> Mapping[str, str]:
        """PUT the manifest ``body`` under ``reference`` (a tag or its digest); the answer's headers."""

        async def put() -> Mapping[str, str]:
            headers = {"Content-Type": media_type}
            resp = await self._open(f"manifests/{reference}", method="PUT", data=body, headers=headers)
            found = dict(resp.headers)
            resp.release()
            return found

        return self._run(put())

    @contextlib.contextmanager
    def blob(self, digest: str) -> Iterator[ReadChunk]:
        """``read(n)`` of the blob ``digest`` (b"" at its end); nothing is checked here."""
        resp = self._run(self._open(f"blobs/{digest}"))

        def read(n: int) -> bytes:
            return self._run(resp.content.read(n))

        try:
            yield read
        finally:  # on the loop's thread (aiohttp is not thread-safe); a stalled body is dropped, not read
            with contextlib.suppress(Exception):
                self._run(_close(resp))


async def _close(resp: aiohttp.ClientResponse) -> None:
    resp.close()


async def _read_capped(resp: aiohttp.ClientResponse, limit: int, too_large: Callable[[], str]) -> bytes:
    body = bytearray()
    while True:
        chunk = await resp.content.read(min(64 * 1024, limit + 1 - len(body)))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise ArtifactError(Reason.LIMIT_EXCEEDED, too_large(), transient=False)


async def _small_text(resp: aiohttp.ClientResponse) -> str:
    """The start of an error body, on one line (the registry's error codes help people)."""
    with contextlib.suppress(Exception):
        raw = await resp.content.read(512)
        return " ".join(raw.decode("utf-8", "replace").split())[:300]
    return ""
