"""The runtime's own word on a model's inputs and outputs: Open Inference Protocol model metadata
(``GET /v2/models/{name}``: name, versions, platform, inputs/outputs of name, datatype, shape), asked
of one endpoint variant's Service before its canary takes traffic (handlers.runtime_contract).

A call from the operator into a tenant's Service, so bounded and tenancy-safe:

- it connects only to the cluster IP of the variant's own Service as the watch cache holds it
  (``service_address``: type ClusterIP, controlled by the endpoint, a valid unicast IP), never through
  DNS: a tenant able to edit Services cannot steer it elsewhere (an ExternalName, another name); the
  Service DNS name, ``<slot>.<namespace>.svc`` (``service_host``), is sent as the Host header;
- one GET, plain HTTP, no proxy; a redirect is never followed (http.client does not, and a 3xx is an
  answer that the runtime does not speak OIP here);
- a total deadline (``timeout``: connecting, headers, every byte; a watchdog cuts the socket) and a
  size cap (``max_bytes``, checked while reading); anything else is ``RuntimeUnanswered``, whose
  message carries no remote text beyond a short, sanitized summary (``summary``).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from modelversioning.analysis.prometheus import CHUNK, _Watchdog
from modelversioning.api.wire import ANNOTATION_PREFIX, MODELENDPOINT
from modelversioning.domain.io_contract import IOSignature

DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_SERVICE_HOST = re.compile(rf"^{DNS_LABEL}\.{DNS_LABEL}\.svc$")
TIMEOUT_SECONDS = 2.0
MAX_BYTES = 256 * 1024
SUMMARY_CHARS = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9 .,:;()/_=+-]")


class RuntimeUnanswered(Exception):  # noqa: N818 - a verdict: the runtime's metadata could not be read
    """The runtime gave no usable OIP model metadata; the message says why."""


def service_host(slot: str, namespace: str) -> str:
    """The DNS name of one variant's own Service (the only host ever asked)."""
    host = f"{slot}.{namespace}.svc"
    if not _SERVICE_HOST.match(host):
        raise RuntimeUnanswered(f"{host!r} is not a Service DNS name")
    return host


def summary(text: object, limit: int = SUMMARY_CHARS) -> str:
    """A short, printable summary of text that may come from the remote side (never more)."""
    flat = _UNSAFE.sub("?", " ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def service_address(service: Mapping[str, Any] | None, slot: str, namespace: str, endpoint_uid: str) -> str:
    """The cluster IP of the slot's own Service (the watch cache's copy), or ``RuntimeUnanswered``
    saying why it is refused: not ours (no controller reference to the endpoint), not type ClusterIP
    (an ExternalName would send the operator anywhere), or without a valid unicast cluster IP."""
    if service is None:
        raise RuntimeUnanswered(f"the Service {slot} is not in the cache yet")
    md, spec = service.get("metadata") or {}, service.get("spec") or {}
    if md.get("name") != slot or md.get("namespace") != namespace:
        raise RuntimeUnanswered(f"refused to ask the Service {slot}: the cached object is another one")
    if not endpoint_uid or not any(
        isinstance(ref, Mapping)
        and ref.get("controller")
        and ref.get("kind") == MODELENDPOINT.kind
        and str(ref.get("apiVersion", "")).startswith(ANNOTATION_PREFIX)
        and ref.get("uid") == endpoint_uid
        for ref in md.get("ownerReferences") or []
    ):
        raise RuntimeUnanswered(f"refused to ask the Service {slot}: it is not controlled by this endpoint")
    if spec.get("type") != "ClusterIP":
        raise RuntimeUnanswered(
            f"refused to ask the Service {slot}: type {summary(spec.get('type'), 32)}, not ClusterIP"
        )
    return _unicast(spec.get("clusterIP"), slot)


def _unicast(raw: Any, slot: str) -> str:
    try:
        ip = ipaddress.ip_address(raw if isinstance(raw, str) else "")
    except ValueError:
        raise RuntimeUnanswered(f"refused to ask the Service {slot}: it has no cluster IP") from None
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local:
        raise RuntimeUnanswered(
            f"refused to ask the Service {slot}: cluster IP {ip} is not a unicast address"
        )
    return str(ip)


def model_metadata(
    host: str,
    port: int,
    model: str,
    *,
    address: str,
    timeout: float = TIMEOUT_SECONDS,
    max_bytes: int = MAX_BYTES,
) -> dict[str, Any]:
    """The OIP metadata of ``model`` from the Service ``host`` (a ``<slot>.<namespace>.svc`` name, sent
    as Host) at ``address`` (its cluster IP, from ``service_address``: an IP, never resolved)."""
    if not _SERVICE_HOST.match(host) or not 0 < port < 65536:
        raise RuntimeUnanswered(f"refused to ask {host}:{port}: only a variant's own Service")
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        raise RuntimeUnanswered(
            f"refused to ask {host}: {summary(address, 64)!r} is not an IP address"
        ) from None
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    dog = _Watchdog(conn, timeout)
    deadline = time.monotonic() + timeout
    path = "/v2/models/" + urllib.parse.quote(model, safe="")
    try:
        conn.request("GET", path, headers={"Accept": "application/json", "Host": f"{host}:{port}"})
        resp = conn.getresponse()
        raw = _body(resp, deadline, max_bytes)
    except RuntimeUnanswered:
        raise
    except (OSError, http.client.HTTPException, ValueError) as e:
        late = dog.fired or time.monotonic() >= deadline
        why = f"no answer within {timeout:g}s" if late else _failure(e)
        raise RuntimeUnanswered(why) from e
    finally:
        dog.cancel()
        conn.close()
    if dog.fired:
        raise RuntimeUnanswered(f"no answer within {timeout:g}s")
    if resp.status != 200:  # a redirect included: never followed
        raise RuntimeUnanswered(f"GET {path} answered {resp.status} (does the runtime speak OIP?)")
    try:
        meta = json.loads(raw.decode())
    except ValueError as e:
        raise RuntimeUnanswered(f"GET {path}: not JSON ({type(e).__name__})") from e
    if not isinstance(meta, dict):
        raise RuntimeUnanswered(f"GET {path}: not a JSON object")
    return meta


def _failure(e: BaseException) -> str:
    """What failed, without the remote side's words: an HTTP parse error quotes what it read."""
    if isinstance(e, OSError):
        return f"{type(e).__name__}: {summary(e.strerror or e, 80)}"
    return f"{type(e).__name__} (not an HTTP answer)"


def _body(resp: http.client.HTTPResponse, deadline: float, max_bytes: int) -> bytes:
    declared = resp.getheader("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RuntimeUnanswered(f"the metadata is {declared} bytes, over the cap of {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() >= deadline:
            raise RuntimeUnanswered("the answer did not end within the deadline")
        chunk = resp.read1(CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise RuntimeUnanswered(f"the metadata is more than {max_bytes} bytes, over the cap")
        chunks.append(chunk)


def served_signature(meta: Mapping[str, Any]) -> IOSignature:
    """The OIP metadata's inputs/outputs (``datatype`` is OIP's name for the dtype)."""

    def side(raw: Any) -> list[dict[str, Any]]:
        items = raw if isinstance(raw, list) else []
        return [
            {"name": t.get("name"), "dtype": str(t.get("datatype", "")), "shape": t.get("shape")}
            for t in items
            if isinstance(t, Mapping)
        ]

    return IOSignature.of({"inputs": side(meta.get("inputs")), "outputs": side(meta.get("outputs"))})
