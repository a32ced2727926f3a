"""Which artifact URIs may be fetched: a pure check, applied before any byte is read.

``check_uri(uri, policy)`` returns ``None`` when the URI may be fetched, or a human-readable
refusal (which never contains credentials or query strings). Rules, in order:

1. The URI must be absolute (``scheme://...``) and its scheme in ``policy.allowed_schemes``.
2. Userinfo (``scheme://user:password@host``) is always refused: credentials belong in a Secret
   referenced by ``artifact.secretRef``.
3. ``file://`` URIs (``file:///abs/path`` or ``file://localhost/abs/path``) are allowed only when
   the path, after resolving symlinks and ``..``, lies under one of ``policy.file_roots`` (also
   resolved). No roots configured means every ``file://`` URI is refused.
4. Network schemes: the host actually contacted is checked --
   ``http(s)``: the URL host; ``oci``: the registry host (and every request the registry client makes:
   a token realm, a blob's redirect); ``s3``: the endpoint (``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``
   from the Secret or the environment), ``s3.amazonaws.com`` when none is configured;
   ``gs``/``gcs``: the endpoint (``GCS_ENDPOINT_URL``/``STORAGE_EMULATOR_HOST``), else
   ``storage.googleapis.com``. (The bucket name is not a host and is not checked.)

   * If ``policy.allowed_hosts`` is non-empty the host must match one entry: exactly
     (case-insensitive, trailing dot ignored) or ``*.suffix``, which matches any host ending in
     ``.suffix`` (not ``suffix`` itself).
   * Cloud metadata endpoints are always refused, by name (``metadata``,
     ``metadata.google.internal``, ...) and by address (169.254.169.254, fd00:ec2::254,
     fd00:ec2::23, 100.100.100.200, 168.63.129.16, 192.0.0.192, ...), as is every link-local
     address (169.254.0.0/16, fe80::/10) -- whatever ``allow_private_networks`` says. IPv6
     addresses that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible
     ``::a.b.c.d``, NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4 ``2002::/16``, Teredo
     ``2001::/32``) are judged by that IPv4 address too.
   * A host written as a number in a non-canonical IPv4 form (``2130706433``, ``0x7f.1``,
     ``0177.0.0.1``, ``127.1``) is refused: resolvers read it as an address, our checks would not.
   * Loopback/private/non-global addresses (127.0.0.0/8, 10/8, 172.16/12, 192.168/16,
     100.64/10, fc00::/7, ::1, ...) are refused unless ``policy.allow_private_networks`` is True
     or the address is in a CIDR of ``policy.allowed_private_networks`` or the host name matches a
     name there.
   * Host names are resolved (``socket.getaddrinfo``) and refused if ANY address they resolve to
     is refused. A name that does not resolve is not refused here (the fetch then fails with
     FetchFailed). The HTTP clients used for fetching (http(s), and s3 through aiobotocore)
     re-apply the address check to the addresses they actually connect to and to every
     redirect, so DNS rebinding and redirects cannot reach a refused address.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from modelversioning.api.artifact_policy import ArtifactPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NETWORK_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "http", "https", "oci"})
DEFAULT_S3_HOST = "s3.amazonaws.com"
DEFAULT_GCS_HOST = "storage.googleapis.com"

METADATA_HOSTNAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
        ipaddress.ip_address("169.254.170.2"),  # ECS task metadata
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
        ipaddress.ip_address("fd00:ec2::23"),  # AWS (IPv6 link-local services: DNS, time, IMDS)
        ipaddress.ip_address("fd00:ec2::253"),  # AWS DNS over IPv6
        ipaddress.ip_address("fd00:ec2::123"),  # AWS time sync over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("168.63.129.16"),  # Azure WireServer (host agent, not "private")
        ipaddress.ip_address("192.0.0.192"),  # Oracle Cloud IMDS
    }
)
LINK_LOCAL_NETWORKS = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
_NAT64_WKP = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# A number in any form a resolver (inet_aton) reads as an IPv4 address: 2130706433, 0x7f.1, 0177.0.0.1.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)

Resolver = Callable[[str, int | None], Iterable[str]]


def _default_resolver(host: str, port: int | None) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class Target:
    """What a URI makes us contact: for messages and for the host checks."""

    scheme: str
    host: str | None  # None for file://
    port: int | None
    path: str  # for file://: the decoded local path


def _normalise_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


def endpoint_for(scheme: str, options_env: Mapping[str, str] | None = None) -> str | None:
    """The configured endpoint URL for an object-store scheme, from Secret data or environment."""
    env = options_env if options_env is not None else os.environ
    if scheme in ("s3", "s3a"):
        return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    if scheme in ("gs", "gcs"):
        url = env.get("GCS_ENDPOINT_URL") or env.get("STORAGE_EMULATOR_HOST") or None
        if url and "://" not in url:
            url = "http://" + url
        return url
    return None


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo client)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    n = int(ip)
    if ip in _NAT64_WKP:
        return ipaddress.IPv4Address(n & 0xFFFFFFFF)
    if ip in _NAT64_LOCAL:  # RFC 6052, /48 prefix: IPv4 bits 48..63 and 72..87 (bits 64..71 are zero)
        return ipaddress.IPv4Address((((n >> 64) & 0xFFFF) << 16) | ((n >> 40) & 0xFFFF))
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _IPV4_COMPATIBLE and n > 1:  # ::a.b.c.d (deprecated, still routed by some stacks)
        return ipaddress.IPv4Address(n)
    return None


def _private_allowed(ip: IPAddress, host: str | None, policy: ArtifactPolicy) -> bool:
    if policy.allow_private_networks:
        return True
    for entry in policy.allowed_private_networks:
        entry = entry.strip()
        if not entry:
            continue
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if host is not None and host_allowed(host, [entry]):
                return True
            continue
        if ip.version == net.version and ip in net:
            return True
    return False


def check_address(address: str | IPAddress, policy: ArtifactPolicy, *, host: str | None = None) -> str | None:
    """Refusal message for one IP address (reached through ``host``, if known), or None."""
    try:
        ip: IPAddress = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return f"{address!r} is not an IP address"
    inner = embedded_ipv4(ip)
    if inner is not None:
        refusal = check_address(inner, policy, host=host)
        if refusal:
            return f"address {ip} embeds {inner}: {refusal}"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return None
    if ip in METADATA_ADDRESSES:
        return f"address {ip} is a cloud metadata endpoint"
    if any(ip in net for net in LINK_LOCAL_NETWORKS) or ip.is_link_local:
        return f"address {ip} is link-local"
    if not ip.is_global and not _private_allowed(ip, host, policy):
        return (
            f"address {ip} is loopback/private and neither artifacts.allowPrivateNetworks nor "
            "artifacts.allowedPrivateNetworks allows it"
        )
    return None


def host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """Exact (case-insensitive) or ``*.suffix`` match; an empty allow-list allows every host."""
    patterns = [_normalise_host(p) for p in allowed_hosts if p.strip()]
    if not patterns:
        return True
    h = _normalise_host(host)
    for pattern in patterns:
        if pattern.startswith("*."):
            if h.endswith(pattern[1:]) and len(h) > len(pattern) - 1:
                return True
        elif h == pattern:
            return True
    return False


def check_host(
    host: str,
    port: int | None,
    policy: ArtifactPolicy,
    *,
    resolve: bool = True,
    resolver: Resolver | None = None,
) -> str | None:
    """Refusal message for a network host (name or literal address), or None."""
    h = _normalise_host(host.strip("[]"))
    if not h:
        return "the URI has no host"
    if h in METADATA_HOSTNAMES:
        return f"host {h} is a cloud metadata endpoint"
    if ":" not in h and _NUMERIC_HOST.match(h) and not _canonical_ipv4(h):
        return f"host {h} is an IPv4 address in a non-canonical form; write it as a.b.c.d"
    if not host_allowed(h, policy.allowed_hosts):
        return f"host {h} is not in artifacts.allowedHosts"
    try:
        literal: IPAddress | None = ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        literal = None
    if literal is not None:
        return check_address(literal, policy)
    if not resolve:
        return None
    try:
        addresses = list((resolver or _default_resolver)(h, port))
    except (OSError, UnicodeError):
        return None  # unresolvable: not refused here; the fetch reports FetchFailed
    for address in addresses:
        refusal = check_address(address.split("%", 1)[0], policy, host=h)
        if refusal:
            return f"host {h} resolves to a refused address ({refusal})"
    return None


def _canonical_ipv4(h: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(h.rstrip("."))) == h.rstrip(".")
    except ValueError:
        return False


def parse_target(uri: str, endpoint_url: str | None = None) -> Target:
    """Split a URI into what will be contacted. Raises ValueError for malformed URIs."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return Target(scheme, parts.hostname or "", parts.port, parts.path)
    if scheme == "file":
        return Target(scheme, None, None, unquote(parts.path))
    if scheme in ("s3", "s3a", "gs", "gcs"):
        default = DEFAULT_S3_HOST if scheme in ("s3", "s3a") else DEFAULT_GCS_HOST
        if endpoint_url:
            ep = urlsplit(endpoint_url)
            if ep.scheme not in ("http", "https") or not ep.hostname:
                raise ValueError("the configured endpoint URL is not an http(s) URL")
            return Target(scheme, ep.hostname, ep.port, parts.path)
        return Target(scheme, default, None, parts.path)
    return Target(scheme, parts.hostname, parts.port, parts.path)


def resolve_file_path(uri: str) -> Path:
    """The real local path of a file:// URI (symlinks and ``..`` resolved)."""
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ValueError("file:// URIs must be file:///absolute/path (no host)")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError("file:// URIs need an absolute path")
    if "\x00" in path:
        raise ValueError("file:// path contains a NUL byte")
    return Path(os.path.realpath(path))


def path_under_roots(path: str | os.PathLike[str], roots: Iterable[str]) -> bool:
    """True if the real path of ``path`` is one of ``roots`` (resolved) or below one of them."""
    real = Path(os.path.realpath(path))
    for root in roots:
        if not root.strip():
            continue
        real_root = Path(os.path.realpath(os.path.expanduser(root)))
        if real == real_root or real.is_relative_to(real_root):
            return True
    return False


def check_uri(
    uri: str,
    policy: ArtifactPolicy,
    *,
    endpoint_url: str | None = None,
    resolve: bool = True,
    resolver: Resolver | None = None,
) -> str | None:
    """None if ``uri`` may be fetched under ``policy``, else why not (safe to show to users).

    ``endpoint_url`` is the object-store endpoint for s3/gs (see :func:`endpoint_for`); it is
    checked like an http host. ``resolve=False`` skips DNS (literal addresses and names are
    still checked) -- used for every request/redirect inside the HTTP client, whose resolver
    checks the addresses it connects to.
    """
    from modelversioning.artifacts.redact import redact_uri

    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- raises ValueError for a malformed port
    except ValueError:
        return f"{redact_uri(uri)} is not a valid URI"
    scheme = parts.scheme.lower()
    if not scheme or "://" not in uri:
        return f"{redact_uri(uri)} is not an absolute URI (scheme://...)"
    allowed = [s.lower() for s in policy.allowed_schemes]
    if scheme not in allowed:
        return f"scheme {scheme}:// is not in artifacts.allowedSchemes ({', '.join(allowed) or 'none'})"
    if "@" in parts.netloc:
        return (
            "the URI contains credentials (user info); put credentials in a Secret and "
            "reference it with artifact.secretRef"
        )

    if scheme == "file":
        if not policy.file_roots:
            return "file:// URIs are refused: no artifacts.fileRoots are configured"
        try:
            real = resolve_file_path(uri)
        except ValueError as e:
            return str(e)
        if not path_under_roots(real, policy.file_roots):
            return f"{redact_uri(uri)} is not under an allowed file root ({', '.join(policy.file_roots)})"
        return None

    if scheme not in NETWORK_SCHEMES:
        # Another fsspec backend (e.g. memory://): the scheme allow-list is all we can check.
        if parts.hostname and parts.hostname.lower() in METADATA_HOSTNAMES:
            return f"host {parts.hostname} is a cloud metadata endpoint"
        return None

    if scheme in ("s3", "s3a", "gs", "gcs") and not parts.netloc:
        return f"{redact_uri(uri)} has no bucket"
    try:
        target = parse_target(uri, endpoint_url)
    except ValueError as e:
        return str(e)
    if endpoint_url and "@" in urlsplit(endpoint_url).netloc:
        return "the configured endpoint URL contains credentials (user info)"
    assert target.host is not None
    implicit_default = not endpoint_url and target.host in (DEFAULT_S3_HOST, DEFAULT_GCS_HOST)
    return check_host(
        target.host,
        target.port,
        policy,
        resolve=resolve and not implicit_default,
        resolver=resolver,
    )
