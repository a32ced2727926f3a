"""Issue 14, findings 8 and 9 (the artifact side): safer defaults and the smaller holes. Each case
failed against the code as it landed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from servers import ForwardProxy, HTTPServer

from modelversioning.api.settings import ArtifactPolicy, Settings
from modelversioning.artifacts import Reason, check_address, check_uri, verify_artifact
from modelversioning.cli.verify import main as verify_cli
from waits import eventually

LOOPBACK = ArtifactPolicy(allowed_private_networks=["127.0.0.0/8"])
SHA_ABC = hashlib.sha256(b"abc").hexdigest()
LOOSE = ArtifactPolicy(allow_private_networks=True)  # even with private networks allowed


@pytest.mark.parametrize(
    "address",
    [
        "168.63.129.16",  # Azure WireServer: "global", but the host agent
        "fd00:ec2::23",  # AWS link-local services over IPv6
        "192.0.0.192",  # Oracle Cloud metadata
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1:a9fe:a9:fe00::",  # local-use NAT64 (/48) of 169.254.169.254
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
        "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254 (obfuscated)
    ],
)
def test_metadata_and_link_local_in_every_form_are_refused(address: str) -> None:
    refusal = check_address(address, LOOSE)
    assert refusal is not None and ("metadata" in refusal or "link-local" in refusal), refusal


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1", "127.1", "2852039166"])
def test_non_canonical_ipv4_hosts_are_refused(host: str) -> None:
    assert "non-canonical" in (check_uri(f"http://{host}/m", LOOSE) or "")


def test_redirect_to_a_non_canonical_ipv4_is_refused_not_retried_forever() -> None:
    # as landed: reported as a transient NotFound, so the operator retried it for ever
    with HTTPServer({"/go": (302, {"Location": "http://0x7f.1:9/x"}, b"")}) as srv:
        r = verify_artifact(f"{srv.base}/go", SHA_ABC, policy=LOOPBACK, env={})
    assert r.reason is Reason.URI_REFUSED and not r.transient, r.message


def test_private_networks_are_refused_by_default_and_allowed_by_list() -> None:
    default = ArtifactPolicy()
    assert not default.allow_private_networks
    for uri in ("http://10.1.2.3/m", "http://127.0.0.1:9000/m", "http://[fd12::1]/m"):
        assert "loopback/private" in (check_uri(uri, default) or ""), uri
    listed = ArtifactPolicy(allowed_private_networks=["10.1.0.0/16", "minio.storage.test"])
    assert check_uri("http://10.1.2.3/m", listed) is None
    assert check_uri("http://10.2.0.1/m", listed) is not None
    resolver = {"minio.storage.test": ["10.9.9.9"], "other.test": ["10.9.9.9"]}
    resolve = lambda h, p: resolver[h]  # noqa: E731
    assert check_uri("http://minio.storage.test/m", listed, resolver=resolve) is None
    assert check_uri("http://other.test/m", listed, resolver=resolve) is not None


def test_mismatch_does_not_reveal_what_an_internal_url_hashes_to() -> None:
    # as landed: "sha256 is <digest of the internal page>, expected ... (size)": a content oracle
    secret_page = b"internal admin page v1.2.3"
    with HTTPServer({"/admin": (200, {}, secret_page)}) as srv:
        r = verify_artifact(f"{srv.base}/admin", "0" * 64, policy=LOOPBACK, env={})
    assert r.reason is Reason.DIGEST_MISMATCH
    assert hashlib.sha256(secret_page).hexdigest() not in r.message
    assert str(len(secret_page)) not in r.message


def test_bytes_hashed_metric_counts_only_verified_artifacts() -> None:
    # the per-namespace counter added what a failed verification had read: the size of whatever an
    # internal URL returned, readable by anyone who sees the operator's metrics (the oracle again)
    from modelversioning.api import wire as R
    from modelversioning.api.modelversion_spec import ModelVersionSpec
    from modelversioning.api.settings import Verification
    from modelversioning.domain.version_facts import VerifyResult
    from modelversioning.handlers.verification import Verifications
    from modelversioning.metrics import REGISTRY

    results = {
        "adv-oracle": VerifyResult(R.DIGEST_MISMATCH, "m", False, actual="f" * 64, size_bytes=123_457),
        "adv-honest": VerifyResult(R.VERIFIED, "ok", False, actual=SHA_ABC, size_bytes=3),
    }
    done: list[str] = []
    v = Verifications(
        None,  # type: ignore[arg-type]
        lambda uri, *_a: results[uri.rsplit("/", 1)[-1]],
        lambda ns, n: done.append(ns),
        Verification(),
    )

    def hashed(ns: str) -> float:
        value = REGISTRY.get_sample_value("modelversioning_artifact_bytes_hashed_total", {"namespace": ns})
        return value or 0.0

    added: dict[str, float] = {}
    for ns in results:
        spec = ModelVersionSpec.model_validate({
            "model": "m", "version": "1.0.0", "artifact": {"uri": f"http://x.test/{ns}", "sha256": SHA_ABC},
            "lineage": {"codeCommit": "abc1234", "dataset": {"name": "d", "version": "1"}},
            "metrics": {"auc": 0.9}, "runtime": {"image": "img:1"},
        })  # fmt: skip
        before = hashed(ns)
        v.start((ns, "m-v1.0.0"), "u", 1, "m", spec)
        eventually(lambda: ns in done, f"the verification in {ns} done")  # noqa: B023 - called at once
        added[ns] = hashed(ns) - before
    v.pool.shutdown()
    assert added == {"adv-oracle": 0, "adv-honest": 3}


def test_proxy_from_the_operator_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # as landed: trust_env=False, so the chart's extraEnv HTTP(S)_PROXY was ignored
    with HTTPServer({"/abc.bin": (200, {}, b"abc")}) as srv, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        r = verify_artifact(f"{srv.base}/abc.bin", SHA_ABC, policy=LOOPBACK, env={})
    assert r.ok, r.message
    assert proxy.forwarded and all(p.startswith(srv.base) for p in proxy.forwarded)


def test_proxy_does_not_bypass_the_address_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        r = verify_artifact("http://10.1.2.3/m.bin", SHA_ABC, policy=LOOPBACK, env={})
    assert r.reason is Reason.URI_REFUSED and proxy.forwarded == [], r.message


def test_missing_settings_file_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    # as landed: a mistyped path silently meant the built-in (then: every host, private networks) policy
    with pytest.raises(FileNotFoundError):
        Settings.load(tmp_path / "nope.yaml")
    env = {**os.environ, "MODELVERSIONING_CONFIG": str(tmp_path / "nope.yaml")}
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "modelversioning.cli.verify", "file:///etc/hostname", "--sha256", "0" * 64],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_declared_size_is_enforced(tmp_path: Path) -> None:
    # as landed: spec.artifact.sizeBytes (the emptyDir sizeLimit of every model pod) was never compared
    (tmp_path / "m.bin").write_bytes(b"abc")
    policy = ArtifactPolicy(file_roots=[str(tmp_path)])
    r = verify_artifact(f"file://{tmp_path}/m.bin", SHA_ABC, policy=policy, expected_size=2)
    assert r.reason is Reason.SIZE_MISMATCH and not r.transient, r.message
    assert verify_artifact(f"file://{tmp_path}/m.bin", SHA_ABC, policy=policy, expected_size=3).ok


def test_failed_directory_commit_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "model"
    src.mkdir()
    for name in ("a", "b", "c"):
        (src / name).write_bytes(name.encode())
    from modelversioning.artifacts import digest_local

    digest = digest_local(src).sha256
    real_replace = os.replace
    calls = {"n": 0}

    def flaky_replace(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_replace(a, b)

    monkeypatch.setattr(os, "replace", flaky_replace)
    dest = tmp_path / "dest"
    r = verify_artifact(
        f"file://{src}/", digest, policy=ArtifactPolicy(file_roots=[str(tmp_path)]), dest=dest
    )
    assert not r.ok
    assert sorted(p.name for p in dest.iterdir()) == []  # as landed: "a" stayed, committed alone


def test_failed_directory_commit_removes_the_directories_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the files were removed, but the directories created for them stayed: dest/sub/deeper, empty
    src = tmp_path / "model"
    for rel in ("a", "sub/b", "sub/deeper/c", "z/d"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(rel.encode())
    from modelversioning.artifacts import digest_local

    digest = digest_local(src).sha256
    dest = tmp_path / "dest"
    (dest / "kept").mkdir(parents=True)  # was there before: not ours to remove
    real_replace = os.replace

    def flaky_replace(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
        if str(b).endswith("/z/d"):
            raise OSError(28, "No space left on device")
        real_replace(a, b)

    monkeypatch.setattr(os, "replace", flaky_replace)
    policy = ArtifactPolicy(file_roots=[str(tmp_path)])
    r = verify_artifact(f"file://{src}/", digest, policy=policy, dest=dest)
    assert not r.ok
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["kept"]


def test_stale_partial_output_is_removed(tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(b"abc")
    dest = tmp_path / "dest"
    (dest / ".mv-partial-deadbeef/sub").mkdir(parents=True)  # a killed earlier attempt
    (dest / ".mv-partial-deadbeef/sub/x").write_bytes(b"x")
    code = verify_cli(
        [
            f"file://{tmp_path}/m.bin",
            "--sha256",
            SHA_ABC,
            "--dest",
            str(dest),
            "--allow-file-root",
            str(tmp_path),
        ]
    )
    assert code == 0
    assert sorted(p.name for p in dest.iterdir()) == ["m.bin"]
