"""oci:// on the API and in the cluster: admission refuses a tag without a digest (and a sha256 other than
the pinned manifest's), `kubectl models register` resolves a tag from a REAL registry and records the
pinned URI, the init container gets the registry credentials of the Secret, and status.artifact lists
what was laid out."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from modelversioning.api.artifact import Artifact, VerifiedArtifact
from modelversioning.artifacts import oci_auth
from modelversioning.cli.kubectl_models import app
from modelversioning.domain import oci_ref
from modelversioning.domain.version_facts import CONTENTS_LIMIT, VerifierFacts, VerifyResult
from modelversioning.render import deployment

E2E = Path(__file__).resolve().parent.parent / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from oci_registry import RegistryServer, push_oras  # noqa: E402

HEX = "ab" * 32
PINNED = f"oci://registry.example.com:5000/models/fraud:2.3.8@sha256:{HEX}"


# ---- admission: the pydantic model and the CRD's CEL pattern (RE2, checked here with Python) ----------
@pytest.mark.parametrize(
    ("uri", "sha256", "says"),
    [
        ("oci://registry.example.com/models/fraud:2.3.8", HEX, "a tag (2.3.8) without a digest"),
        ("oci://registry.example.com/models/fraud", HEX, "no digest"),
        (PINNED, "cd" * 32, "the manifest digest the URI pins"),
        (f"oci://registry.example.com/Models/fraud@sha256:{HEX}", HEX, "not an oci:// reference"),
        (f"oci://registry.example.com/models/../x@sha256:{HEX}", HEX, "not an oci:// reference"),
    ],
)
def test_admission_refuses_an_oci_uri_that_is_not_pinned_to_artifact_sha256(uri, sha256, says):
    with pytest.raises(ValidationError, match=re.escape(says)):
        Artifact(uri=uri, sha256=sha256)


def test_a_pinned_oci_uri_is_accepted_and_other_schemes_are_unchanged():
    assert Artifact(uri=PINNED, sha256=HEX).uri == PINNED
    assert Artifact(uri=f"oci://127.0.0.1:5000/a/b@sha256:{HEX}", sha256=HEX).sha256 == HEX
    assert Artifact(uri="s3://bucket/models/fraud/", sha256=HEX).uri == "s3://bucket/models/fraud/"


def test_the_crds_cel_rules_are_the_python_rules():
    rules = {
        r["message"]: r["rule"]
        for r in Artifact.model_config["json_schema_extra"]["x-kubernetes-validations"]
    }
    pinned = next(rule for msg, rule in rules.items() if "must be pinned" in msg)
    assert oci_ref.PINNED_PATTERN in pinned and "\\" not in oci_ref.PINNED_PATTERN  # sits in a CEL literal
    good = [PINNED, f"oci://r.io/a/b-c/d_e@sha256:{HEX}", f"oci://10.0.0.1:5000/m@sha256:{HEX}"]
    bad = [
        "oci://r.io/a:tag",
        f"oci://r.io/A@sha256:{HEX}",
        f"oci://r.io/a@sha256:{HEX[:-1]}",
        f"oci://u@r.io/a@sha256:{HEX}",
    ]
    assert [bool(re.match(oci_ref.PINNED_PATTERN, u)) for u in good + bad] == [True] * 3 + [False] * 4


# ---- the init container -------------------------------------------------------------------------------
def _version(uri: str, secret: str | None) -> Any:
    """What the init container is rendered from: the version's artifact."""
    artifact: dict[str, Any] = {"uri": uri, "sha256": HEX}
    if secret:
        artifact["secretRef"] = {"name": secret}
    return SimpleNamespace(artifact=Artifact.model_validate(artifact))


def test_the_init_container_gets_the_secrets_docker_config_for_an_oci_artifact():
    from modelversioning.api.settings import ArtifactPolicy, Serving

    init = deployment._init_container(_version(PINNED, "registry-creds"), Serving(), ArtifactPolicy())
    assert init["envFrom"] == [{"secretRef": {"name": "registry-creds"}}]
    assert init["env"] == [
        {
            "name": "MODELVERSIONING_DOCKER_CONFIG_JSON",
            "valueFrom": {
                "secretKeyRef": {"name": "registry-creds", "key": ".dockerconfigjson", "optional": True}
            },
        }
    ]
    # the names render may not import from artifacts: the same ones
    assert (deployment.DOCKER_CONFIG_SECRET_KEY, deployment.DOCKER_CONFIG_ENV) == (
        oci_auth.DOCKER_CONFIG_KEY,
        oci_auth.DOCKER_CONFIG_ENV,
    )
    s3 = deployment._init_container(_version("s3://b/m/", "s3-creds"), Serving(), ArtifactPolicy())
    assert "env" not in s3  # other schemes: unchanged
    assert "env" not in deployment._init_container(_version(PINNED, None), Serving(), ArtifactPolicy())


def test_the_model_server_is_told_its_pinned_digest_is_an_oci_manifest(tmp_path):
    """MODEL_SHA256 of an oci:// version is the manifest digest: the reference server cannot hash the files
    back to it (the init container verified manifest and layers) and must not refuse them for that."""
    from modelversioning.api.modelendpoint import Variant
    from modelversioning.api.settings import Serving
    from modelversioning.modelserver import ModelLoadError, load_model

    spec = SimpleNamespace(
        artifact=Artifact(uri=PINNED, sha256=HEX), model="fraud", version="2.3.8", signature=None,
        runtime=SimpleNamespace(image="srv:1", command=None, args=None, env=[], port=8080,
                                health_path="/healthz", resources=None),
    )  # fmt: skip
    env = deployment._server_container(Variant(name="main", version="2.3.8"), spec, Serving())["env"]
    assert {"name": "MODEL_SHA256_OF", "value": "oci-manifest"} in env
    (tmp_path / "model.onnx").write_bytes(b"weights")
    assert load_model(tmp_path, HEX, pinned_manifest=True).sha256 == HEX
    with pytest.raises(ModelLoadError, match="does not match the pinned sha256"):
        load_model(tmp_path, HEX)  # any other artifact: the files must hash to the pin
    spec.artifact = Artifact(uri="s3://b/m/", sha256=HEX)
    env = deployment._server_container(Variant(name="main", version="2.3.8"), spec, Serving())["env"]
    assert "MODEL_SHA256_OF" not in {e["name"] for e in env}


def test_a_new_policy_setting_left_at_its_default_does_not_change_the_pod_template():
    from modelversioning.api.settings import ArtifactPolicy

    assert "plainHttpRegistries" not in deployment.policy_json(ArtifactPolicy())
    assert '"plainHttpRegistries":["r.local"]' in deployment.policy_json(
        ArtifactPolicy(plain_http_registries=["r.local"])
    )


# ---- status.artifact ----------------------------------------------------------------------------------
def test_status_lists_what_an_oci_artifact_laid_out_and_its_content_digest():
    from modelversioning.api import wire as R
    from modelversioning.domain.version_plan import decide
    from test_version_verify import OK, POLICY, facts, unverified  # the version_verify fixtures

    contents = tuple((f"shard-{i:03d}.bin", f"{i:064x}", i) for i in range(CONTENTS_LIMIT + 5))
    res = VerifyResult(R.VERIFIED, "ok", False, OK.actual, 99, len(contents), "modelpack", "c" * 64, contents)
    f = facts(
        status=unverified(R.VERIFYING, "Unknown"), verifier=VerifierFacts(result=res, result_generation=1)
    )
    art = decide(f, POLICY, datetime(2026, 1, 1, tzinfo=UTC)).status["artifact"]
    assert (art["layout"], art["contentDigest"], art["files"]) == ("modelpack", "c" * 64, CONTENTS_LIMIT + 5)
    assert len(art["contents"]) == CONTENTS_LIMIT
    assert art["contents"][1] == {"path": "shard-001.bin", "sha256": f"{1:064x}", "sizeBytes": 1}
    VerifiedArtifact.model_validate(art)  # what the CRD's schema accepts
    plain = decide(replace_result(f, OK), POLICY, datetime(2026, 1, 1, tzinfo=UTC)).status["artifact"]
    assert not {"layout", "contents", "contentDigest"} & set(plain)  # other schemes: unchanged


def replace_result(f: Any, res: VerifyResult) -> Any:
    from dataclasses import replace

    return replace(f, verifier=VerifierFacts(result=res, result_generation=1))


# ---- kubectl models register --artifact oci://host/repo:tag ----------------------------------------------
REGISTER = [
    "register", "fraud-detector", "2.4.1", "--image", "ghcr.io/example/fraud:1.4", "--dataset", "tx",
    "--dataset-version", "2024-09-30", "--metric", "auc=0.95", "--author", "jane", "--framework", "xgb",
    "--code-repository", "https://git.example.com/ml/fraud.git", "--code-commit", "3f9c2a1d8e4b5a6c7d8e",
]  # fmt: skip


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with RegistryServer.start(tmp_path_factory.mktemp("registry"), auth="htpasswd") as reg:
        yield reg


def _push(registry: RegistryServer) -> Any:
    with RegistryServer.start(registry.root) as open_registry:  # the same storage, without auth
        return push_oras(open_registry.url, "ml/fraud", {"model.onnx": b"w" * 5000}, tag="2.4.1")


def test_register_resolves_a_tag_to_its_manifest_digest(registry, tmp_path, monkeypatch):
    pushed = _push(registry)
    (tmp_path / "config.json").write_text(registry.docker_config())  # your own docker login
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    r = CliRunner().invoke(
        app, [*REGISTER, "--artifact", f"oci://{registry.netloc}/ml/fraud:2.4.1", "--plain-http"]
    )
    assert r.exit_code == 0, r.output
    artifact = yaml.safe_load(r.stdout)["spec"]["artifact"]
    assert artifact == {
        "uri": f"oci://{registry.netloc}/ml/fraud:2.4.1@{pushed.digest}", "sha256": pushed.hex,
        "sizeBytes": pushed.size,
    }  # fmt: skip
    assert f"is sha256:{pushed.hex} (oras layout, 1 layers" in r.stderr


def test_register_refuses_what_it_cannot_resolve(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no docker login
    r = CliRunner().invoke(
        app, [*REGISTER, "--artifact", f"oci://{registry.netloc}/ml/fraud:2.4.1", "--plain-http"]
    )
    assert r.exit_code != 0 and "AccessDenied" in r.output, r.output
    assert r.stdout == ""  # nothing printed for GitOps


def test_register_with_sha256_pins_the_tag_without_asking_the_registry(tmp_path):
    r = CliRunner().invoke(
        app, [*REGISTER, "--artifact", "oci://registry.invalid/ml/fraud:2.4.1", "--sha256", HEX]
    )
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.stdout)["spec"]["artifact"] == {
        "uri": f"oci://registry.invalid/ml/fraud:2.4.1@sha256:{HEX}", "sha256": HEX,
    }  # fmt: skip
    other = CliRunner().invoke(app, [*REGISTER, "--artifact", PINNED, "--sha256", "cd" * 32])
    assert other.exit_code == 2 and "is not the manifest digest" in other.output


@pytest.mark.parametrize(
    ("verify_reason", "variant_reason"),
    [
        ("ManifestDigestMismatch", "DigestMismatch"),
        ("LayerDigestMismatch", "DigestMismatch"),
        ("UnsafeArchive", "ArtifactNotVerified"),
    ],
)
def test_an_oci_mismatch_is_a_digest_mismatch_for_the_endpoint(verify_reason, variant_reason):
    """The variant's vocabulary stays: a manifest or layer that is not the pinned one says DigestMismatch
    (a stalled endpoint), and traffic stays on the old slot."""
    from dataclasses import replace

    from endpoint_plan_facts import EDIT_FACTS, EDITED
    from modelversioning.domain import endpoint_plan as P

    new_mv = replace(EDITED.mv, verified=False, verify_reason=verify_reason)
    plan = P.decide(replace(EDIT_FACTS, variants=(replace(EDITED, mv=new_mv),)))
    assert [x.slot for x in plan.destinations] == ["ep-stable-old"]
    assert plan.decision("stable").reason == variant_reason
