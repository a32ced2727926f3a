"""Issue 14, findings 3 and 4: credentials go only where their owner said they may go, and the
address policy holds for s3 endpoints at connect time. Each case failed against the code as it
landed (the credentials reached the server, or requests reached a refused address)."""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from fakes3 import FakeS3
from servers import HTTPServer

from modelversioning.api.settings import ArtifactPolicy
from modelversioning.artifacts import Reason, verify_artifact
from modelversioning.artifacts.credentials import HOSTS_KEY
from modelversioning.handlers.kube import Kube

LOOPBACK = ArtifactPolicy(allowed_private_networks=["127.0.0.0/8"])
SHA_ABC = hashlib.sha256(b"abc").hexdigest()
TOKEN = "operator-token-1234"


@pytest.fixture
def srv() -> Iterator[HTTPServer]:
    with HTTPServer({"/abc.bin": (200, {}, b"abc")}) as s:
        yield s


def authorizations(srv: HTTPServer) -> list[str]:
    return [h.get("Authorization", "") for _, h in srv.seen]


def test_operator_credentials_are_not_sent_to_a_host_the_platform_did_not_name(srv: HTTPServer) -> None:
    # no secretRef: the operator's own HTTP_AUTHORIZATION went to whatever host the ModelVersion named
    r = verify_artifact(f"{srv.base}/abc.bin", SHA_ABC, policy=LOOPBACK, env={"HTTP_AUTHORIZATION": TOKEN})
    assert r.ok, r.message  # fetched anonymously
    assert srv.seen and not any(authorizations(srv))


def test_operator_credentials_go_to_the_configured_hosts(srv: HTTPServer) -> None:
    policy = LOOPBACK.model_copy(update={"ambient_credential_hosts": ["127.0.0.1"]})
    r = verify_artifact(f"{srv.base}/abc.bin", SHA_ABC, policy=policy, env={"HTTP_AUTHORIZATION": TOKEN})
    assert r.ok and authorizations(srv) == [f"Bearer {TOKEN}"] * len(srv.seen)


def test_secret_that_names_no_hosts_is_not_used(srv: HTTPServer) -> None:
    # the author of a ModelVersion needs no read access to the Secret it names: the Secret decides
    r = verify_artifact(
        f"{srv.base}/abc.bin", SHA_ABC, policy=LOOPBACK, secret_data={"HTTP_BEARER_TOKEN": TOKEN}
    )
    assert r.reason is Reason.ACCESS_DENIED and not r.transient, r.message
    assert HOSTS_KEY in r.message and TOKEN not in r.message
    assert srv.seen == []  # nothing was sent anywhere


def test_secret_is_not_sent_to_another_host(srv: HTTPServer) -> None:
    secret = {"HTTP_BEARER_TOKEN": TOKEN, HOSTS_KEY: "models.example.com"}
    r = verify_artifact(f"{srv.base}/abc.bin", SHA_ABC, policy=LOOPBACK, secret_data=secret)
    assert r.reason is Reason.URI_REFUSED and "models.example.com" in r.message, r.message
    assert srv.seen == []
    ok = verify_artifact(
        f"{srv.base}/abc.bin", SHA_ABC, policy=LOOPBACK, secret_data={**secret, HOSTS_KEY: "127.0.0.1"}
    )
    assert ok.ok and authorizations(srv) == [f"Bearer {TOKEN}"] * len(srv.seen)


def test_secret_does_not_follow_a_redirect_to_another_host(srv: HTTPServer) -> None:
    srv.routes["/go"] = (302, {"Location": f"http://localhost:{srv.port}/abc.bin"}, b"")
    secret = {"HTTP_BEARER_TOKEN": TOKEN, HOSTS_KEY: "127.0.0.1"}
    policy = LOOPBACK.model_copy(update={"allowed_private_networks": ["127.0.0.0/8", "::1/128", "localhost"]})
    r = verify_artifact(f"{srv.base}/go", SHA_ABC, policy=policy, secret_data=secret)
    assert r.ok, r.message
    sent = {path: h.get("Authorization") for path, h in srv.seen}
    assert sent["/go"] == f"Bearer {TOKEN}" and sent["/abc.bin"] is None


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names ending in .test resolve to what the test says (a list: one answer per call, the last
    one repeats); everything else as usual."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        for suffix, ips in answers.items():
            if name == suffix or name.endswith("." + suffix):
                ip = ips.pop(0) if len(ips) > 1 else ips[0]
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port or 0)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def s3_secret(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE0000000",
        "AWS_SECRET_ACCESS_KEY": "s3-secret-value-123",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        **extra,
    }


def test_s3_endpoint_rebinding_to_loopback_is_refused_at_connect_time(fake_dns: dict[str, list[str]]) -> None:
    # the endpoint was checked once (a public address), then s3fs resolved it again: 127.0.0.1
    with FakeS3({"bucket/m.bin": b"abc"}) as s3:
        fake_dns["rebind.test"] = ["93.184.216.34", "127.0.0.1"]
        secret = s3_secret(f"http://rebind.test:{s3.port}", **{HOSTS_KEY: "rebind.test"})
        r = verify_artifact("s3://bucket/m.bin", SHA_ABC, policy=ArtifactPolicy(), secret_data=secret)
        assert r.reason is Reason.URI_REFUSED, r.message
        assert s3.requests == []  # no signed request reached the loopback server


def test_s3_custom_endpoint_is_addressed_path_style(fake_dns: dict[str, list[str]]) -> None:
    # virtual-host addressing made the bucket part of the host name (<bucket>.<endpoint>)
    with FakeS3({"bucket/m.bin": b"abc"}) as s3:
        fake_dns["s3.test"] = ["127.0.0.1"]
        secret = s3_secret(
            f"http://s3.test:{s3.port}", AWS_S3_ADDRESSING_STYLE="virtual", **{HOSTS_KEY: "s3.test"}
        )
        r = verify_artifact("s3://bucket/m.bin", SHA_ABC, policy=LOOPBACK, secret_data=secret)
        assert r.ok, r.message
        assert {host for _, host, _ in s3.requests} == {f"s3.test:{s3.port}"}


def test_binary_secret_value_is_access_denied_not_a_crash() -> None:
    kube = Kube.__new__(Kube)
    kube._call = lambda method, path, *a, **k: {  # type: ignore[method-assign]
        "data": {
            "HTTP_BEARER_TOKEN": base64.b64encode(b"\xff\xfe\x00binary").decode(),
            "cert.der": base64.b64encode(b"\x30\x82\xff").decode(),
        }
    }
    data = kube.read_secret("ns", "creds")  # as landed: UnicodeDecodeError, "verification crashed", forever
    r = verify_artifact(
        "https://models.example.com/m.bin", SHA_ABC, policy=ArtifactPolicy(), secret_data=data
    )
    assert r.reason is Reason.ACCESS_DENIED and not r.transient, r.message
    assert "HTTP_BEARER_TOKEN is not UTF-8" in r.message
    # a binary key the credentials do not use is simply ignored
    del data["HTTP_BEARER_TOKEN"]
    r = verify_artifact("https://[fe80::1]/m.bin", SHA_ABC, policy=ArtifactPolicy(), secret_data=data)
    assert r.reason is Reason.URI_REFUSED
