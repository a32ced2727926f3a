"""Registry credentials by Secret (docker config JSON), bound to the registry they are keyed by, Basic and
Bearer-token authentication answered from the registry's challenge, and the URI policy applied to every
redirect: all against a REAL registry (docker-registry with htpasswd, and with a token service it
verifies: e2e/oci_registry.py)."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import Reason, verify_artifact
from modelversioning.artifacts.oci_auth import (
    DockerConfigError,
    parse_challenge,
    parse_docker_config,
    registry_key,
)
from modelversioning.cli.verify import main as verify_main

E2E = Path(__file__).resolve().parent.parent / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from oci_registry import Pushed, RegistryServer, StaticServer, TokenServer, push_oras  # noqa: E402

POLICY = ArtifactPolicy(
    allowed_schemes=["oci"],
    allowed_private_networks=["127.0.0.0/8", "::1/128"],
    plain_http_registries=["127.0.0.1"],
)
WEIGHTS = os.urandom(200_000)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def pushed(root: Path) -> Iterator[Pushed]:
    """One artifact, pushed through a registry without authentication to the storage the others serve."""
    with RegistryServer.start(root) as open_registry:
        yield push_oras(open_registry.url, "team/fraud", {"model.onnx": WEIGHTS}, tag="2.3.8")


@pytest.fixture(scope="module")
def basic(root: Path, pushed: Pushed) -> Iterator[RegistryServer]:
    with RegistryServer.start(root, auth="htpasswd") as reg:
        yield reg


@pytest.fixture(scope="module")
def tokens(root: Path, pushed: Pushed) -> Iterator[tuple[TokenServer, RegistryServer]]:
    with TokenServer.start() as ts, RegistryServer.start(root, auth=ts) as reg:
        yield ts, reg


def uri(reg: RegistryServer, pushed: Pushed) -> str:
    return f"oci://{reg.netloc}/team/fraud@{pushed.digest}"


def secret(config: str, **more: str) -> dict[str, str]:
    return {".dockerconfigjson": config, **more}


def test_basic_auth_with_the_secrets_docker_config(basic, pushed):
    r = verify_artifact(
        uri(basic, pushed), pushed.hex, policy=POLICY, secret_data=secret(basic.docker_config())
    )
    assert r.ok and [f.path for f in r.contents] == ["model.onnx"], r.message


def test_without_credentials_the_registry_refuses_the_pull(basic, pushed):
    r = verify_artifact(uri(basic, pushed), pushed.hex, policy=POLICY)
    assert r.reason is Reason.ACCESS_DENIED and "no credentials" in r.message and not r.transient, r.message


def test_a_wrong_password_is_access_denied_and_never_shown(basic, pushed):
    wrong = "not-the-password-" + os.urandom(6).hex()
    config = json.dumps({"auths": {basic.netloc: {"username": basic.user, "password": wrong}}})
    r = verify_artifact(uri(basic, pushed), pushed.hex, policy=POLICY, secret_data=secret(config))
    assert r.reason is Reason.ACCESS_DENIED, r.message
    assert (
        wrong not in r.message
        and base64.b64encode(f"{basic.user}:{wrong}".encode()).decode() not in r.message
    )


def test_credentials_for_another_registry_are_never_sent_here(basic, pushed):
    """The docker config binds each entry to its registry: a ModelVersion pointing the Secret at another
    registry (or port) is URIRefused, as for the other schemes' credentials."""
    other = json.dumps({"auths": {"registry.example.com": {"auth": base64.b64encode(b"u:p").decode()}}})
    other_port = basic.docker_config().replace(basic.netloc, "127.0.0.1:1")
    for config in (other, other_port):
        r = verify_artifact(uri(basic, pushed), pushed.hex, policy=POLICY, secret_data=secret(config))
        assert r.reason is Reason.URI_REFUSED and f"{basic.netloc} is not one of them" in r.message, r.message


def test_the_secrets_host_list_narrows_the_docker_config(basic, pushed):
    data = secret(basic.docker_config(), MODELVERSIONING_CREDENTIAL_HOSTS="registry.example.com")
    r = verify_artifact(uri(basic, pushed), pushed.hex, policy=POLICY, secret_data=data)
    assert r.reason is Reason.URI_REFUSED, r.message


def test_bearer_tokens_from_the_realm_the_registry_names(tokens, pushed):
    ts, reg = tokens
    seen = len(ts.requests)
    anonymous = verify_artifact(uri(reg, pushed), pushed.hex, policy=POLICY)
    assert anonymous.reason is Reason.ACCESS_DENIED, anonymous.message  # an anonymous token grants nothing
    r = verify_artifact(
        uri(reg, pushed), pushed.hex, policy=POLICY, secret_data=secret(ts.docker_config(reg.netloc))
    )
    assert r.ok, r.message
    asked = ts.requests[seen:]
    assert [a["granted"] for a in asked] == [False, True]
    assert asked[1]["query"] == {"service": ts.service, "scope": "repository:team/fraud:pull"}


def test_the_token_realm_is_checked_by_the_policy_too(root, pushed):
    """The realm is a URL the registry names: a host the policy refuses is never asked (nor sent the
    registry's credentials)."""
    with TokenServer.start(realm_host="localhost") as ts, RegistryServer.start(root, auth=ts) as reg:
        data = secret(ts.docker_config(reg.netloc))
        assert verify_artifact(uri(reg, pushed), pushed.hex, policy=POLICY, secret_data=data).ok
        asked = len(ts.requests)
        policy = POLICY.model_copy(update={"allowed_hosts": ["127.0.0.1"]})
        r = verify_artifact(uri(reg, pushed), pushed.hex, policy=policy, secret_data=data)
        assert (
            r.reason is Reason.URI_REFUSED and "host localhost is not in artifacts.allowedHosts" in r.message
        )
        assert len(ts.requests) == asked


@pytest.fixture(scope="module")
def redirecting(root: Path, pushed: Pushed) -> Iterator[tuple[RegistryServer, StaticServer]]:
    """The registry's storage ``redirect`` middleware: every blob download answers 307 to another host
    (``localhost``, serving the same storage files), as a registry in front of S3 or a CDN does."""
    static = StaticServer(root)
    try:
        with RegistryServer.start(
            root, auth="htpasswd", redirect_base=f"http://localhost:{static.port}/"
        ) as reg:
            yield reg, static
    finally:
        static.stop()


def test_a_blob_redirect_to_a_host_the_policy_refuses_is_refused(redirecting, pushed):
    reg, static = redirecting
    before = len(static.requests)
    policy = POLICY.model_copy(update={"allowed_hosts": ["127.0.0.1"]})
    r = verify_artifact(uri(reg, pushed), pushed.hex, policy=policy, secret_data=secret(reg.docker_config()))
    assert r.reason is Reason.URI_REFUSED and "host localhost is not in artifacts.allowedHosts" in r.message
    assert static.requests[before:] == []  # refused before connecting


def test_an_allowed_blob_redirect_is_followed_without_the_registrys_credentials(redirecting, pushed):
    reg, static = redirecting
    before = len(static.requests)
    r = verify_artifact(uri(reg, pushed), pushed.hex, policy=POLICY, secret_data=secret(reg.docker_config()))
    assert r.ok, r.message
    followed = static.requests[before:]
    assert [path.rsplit("/", 2)[-2] for path, _ in followed] == [pushed.layers[0].removeprefix("sha256:")]
    assert all("Authorization" not in headers for _, headers in followed)


def test_the_init_container_reads_the_docker_config_from_its_env(basic, pushed, tmp_path, monkeypatch):
    """What the Deployment renders: the Secret's .dockerconfigjson as MODELVERSIONING_DOCKER_CONFIG_JSON,
    `verify-artifact --env-credentials secret --dest`."""
    monkeypatch.setenv("MODELVERSIONING_DOCKER_CONFIG_JSON", basic.docker_config())
    policy = POLICY.model_dump_json(by_alias=True)
    args = [uri(basic, pushed), "--sha256", pushed.hex, "--dest", str(tmp_path),
            "--env-credentials", "secret", "--policy-json", policy, "--output", "json"]  # fmt: skip
    assert verify_main(args) == 0
    assert (tmp_path / "model.onnx").read_bytes() == WEIGHTS
    monkeypatch.delenv("MODELVERSIONING_DOCKER_CONFIG_JSON")
    assert verify_main([*args[:3], "--dest", str(tmp_path / "again"), *args[5:]]) == 3  # AccessDenied
    assert not (tmp_path / "again" / "model.onnx").exists()


# ---- the pure parts ---------------------------------------------------------------------------------
def test_docker_config_entries_and_their_registry_keys():
    b64 = base64.b64encode(b"alice:s3cr:et").decode()
    auths = parse_docker_config(json.dumps({"auths": {
        "https://Registry.Example.com:5000/v1/": {"auth": b64},
        "https://index.docker.io/v1/": {"username": "bob", "password": "pw"},
        "ghcr.io": {"registrytoken": "tok"},
        "empty.example.com": {},
    }}))  # fmt: skip
    assert sorted(auths) == ["ghcr.io", "index.docker.io", "registry.example.com:5000"]
    assert (auths["registry.example.com:5000"].username, auths["registry.example.com:5000"].password) == (
        "alice",
        "s3cr:et",
    )
    assert auths["ghcr.io"].basic is None and auths["ghcr.io"].token == "tok"
    assert registry_key("docker.io") == registry_key("registry-1.docker.io") == "index.docker.io"
    assert "pw" not in repr(auths["index.docker.io"])


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("not json", "not valid JSON"),
        ('{"auths": {"r": {"auth": "%%%"}}}', "not base64"),
        ('{"auths": {"r": {"identitytoken": "x"}}}', "identitytoken"),
        ('{"auths": []}', "no 'auths'"),
    ],
)
def test_unusable_docker_configs_say_why_without_their_values(raw, says):
    with pytest.raises(DockerConfigError, match=says):
        parse_docker_config(raw)


def test_challenges_are_parsed_as_registries_send_them():
    c = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry",scope="repository:a/b:pull"'
    )
    assert c is not None and c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry",
        "scope": "repository:a/b:pull",
    }
    basic_challenge = parse_challenge('Basic realm="mv-test"')
    assert basic_challenge is not None and basic_challenge.scheme == "basic"
    assert parse_challenge("") is None
