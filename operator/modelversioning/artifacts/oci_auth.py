"""Registry credentials (docker config JSON) and the registry's authentication challenge.

Credentials: the ``.dockerconfigjson`` key of a ``kubernetes.io/dockerconfigjson`` Secret (the init
container gets it as ``MODELVERSIONING_DOCKER_CONFIG_JSON``), ``{"auths": {"<registry host[:port]>":
{"auth": base64("user:password")} | {"username": .., "password": ..} | {"registrytoken": ..}}}``.
Each entry is bound to its registry: it is used only for an ``oci://`` URI of exactly that
``host[:port]`` (``https://`` and a path in the key are ignored, as docker does; ``docker.io``,
``index.docker.io`` and ``registry-1.docker.io`` are one registry). ``identitytoken`` (an OAuth2
refresh token) and credential helpers (``credsStore``/``credHelpers``) are not supported.

Challenge (``WWW-Authenticate`` of a 401, RFC 7235 / the distribution token spec): ``Basic`` means the
credentials go in an ``Authorization: Basic`` header to the registry; ``Bearer realm=..,service=..,
scope=..`` means a token is asked from the realm (with Basic credentials if we have some, anonymous
otherwise) and sent as ``Authorization: Bearer`` to the registry only.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DOCKER_CONFIG_KEY = ".dockerconfigjson"  # the key of a kubernetes.io/dockerconfigjson Secret
DOCKER_CONFIG_ENV = "MODELVERSIONING_DOCKER_CONFIG_JSON"  # the same, as the init container's env
DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
MAX_DOCKER_CONFIG = 1024 * 1024


class DockerConfigError(ValueError):
    """A docker config that cannot be used (the message never holds a credential)."""


@dataclass(frozen=True)
class RegistryCredential:
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)  # "registrytoken": a bearer token as is

    @property
    def basic(self) -> str | None:
        """The ``Authorization: Basic`` value, or None (a token-only entry)."""
        if self.username is None or self.password is None:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def secrets(self) -> frozenset[str]:
        """Every value to redact from messages."""
        values = {v for v in (self.password, self.token, self.basic) if v}
        if self.basic:
            values.add(self.basic.removeprefix("Basic "))
        return frozenset(values)


def registry_key(key: str) -> str:
    """``host[:port]`` of a docker config key (``https://host:5000/v1/`` -> ``host:5000``), lowercase."""
    text = key.strip()
    netloc = urlsplit(text).netloc if "://" in text else text.split("/", 1)[0]
    netloc = netloc.lower().rstrip(".")
    return "index.docker.io" if netloc in DOCKER_HUB else netloc


def parse_docker_config(raw: str) -> dict[str, RegistryCredential]:
    """``registry host[:port]`` -> its credential. Raises :class:`DockerConfigError`."""
    if len(raw) > MAX_DOCKER_CONFIG:
        raise DockerConfigError(f"the docker config is larger than {MAX_DOCKER_CONFIG} bytes")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise DockerConfigError("the docker config (.dockerconfigjson) is not valid JSON") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if auths is None and isinstance(doc, dict) and all(isinstance(v, dict) for v in doc.values()):
        auths = doc  # the legacy .dockercfg shape: the entries at the top level
    if not isinstance(auths, dict):
        raise DockerConfigError("the docker config has no 'auths' object")
    out: dict[str, RegistryCredential] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise DockerConfigError(f"the docker config entry for {registry_key(str(key))} is not an object")
        cred = _credential(registry_key(str(key)), entry)
        if cred is not None:
            out[registry_key(str(key))] = cred
    return out


def _credential(registry: str, entry: Mapping[str, object]) -> RegistryCredential | None:
    user, password = entry.get("username"), entry.get("password")
    auth, token = entry.get("auth"), entry.get("registrytoken")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise DockerConfigError(f"the docker config entry for {registry}: 'auth' is not base64") from None
        if ":" not in decoded:
            raise DockerConfigError(f"the docker config entry for {registry}: 'auth' is not user:password")
        user, password = decoded.split(":", 1)
    if isinstance(user, str) and isinstance(password, str) and user:
        return RegistryCredential(user, password)
    if isinstance(token, str) and token:
        return RegistryCredential(token=token)
    if entry.get("identitytoken"):
        raise DockerConfigError(
            f"the docker config entry for {registry} holds an identitytoken (OAuth2), which is not "
            "supported: use a username and password (or a registry token)"
        )
    return None


def credential_for(
    auths: Mapping[str, RegistryCredential], registry: str
) -> tuple[str, RegistryCredential] | None:
    """(key, credential) of the entry bound to ``registry`` (``host[:port]``), or None."""
    key = registry_key(registry)
    cred = auths.get(key)
    return (key, cred) if cred is not None else None


# ---- the challenge ----------------------------------------------------------------------------------
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(,|$)')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer" (lowercase)
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header (``Bearer realm="..",service=".."``)."""
    text = header.strip()
    if not text:
        return None
    scheme, _, rest = text.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None:
            break
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[m.group(1).lower()] = value
        pos = m.end()
    return Challenge(scheme.lower(), params)
