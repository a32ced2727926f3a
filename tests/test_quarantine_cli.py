"""`kubectl models quarantine | unquarantine` (cli/models/quarantine_plan.py, commands/quarantine.py)
against a fake cluster of two namespaces whose RBAC lets the caller read both and write one: the
hostile-tenant rule (reading is not writing) is the command's own check and the API server's."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from modelversioning.api import wire as R
from modelversioning.cli.models import context
from modelversioning.cli.models import quarantine_plan as QP
from modelversioning.cli.models.app import app
from modelversioning.cli.models.errors import ClusterError, Refused
from modelversioning.domain import quarantine as Q
from modelversioning.domain.merge_patch import apply_merge_patch

BAD, GOOD = "fraud-tx@2026-10-01", "fraud-tx@2026-09-01"


def mv(ns: str, version: str, dataset: str = BAD, commit: str = "abcdef1", **ann: str) -> dict[str, Any]:
    name, _, dv = dataset.partition("@")
    return {
        "metadata": {
            "namespace": ns,
            "name": f"fraud-v{version}",
            "resourceVersion": "1",
            "annotations": dict(ann),
        },
        "spec": {"model": "fraud", "version": version,
                 "lineage": {"codeCommit": commit, "dataset": {"name": name, "version": dv}}},
        "status": {"stage": "production"},
    }  # fmt: skip


def endpoint(ns: str, name: str, *variants: tuple[str, str, int, int]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name},
        "spec": {
            "model": "fraud",
            "variants": [{"name": n, "version": v, "weight": w} for n, v, w, _ in variants],
        },
        "status": {
            "effectiveWeights": {n: e for n, _, _, e in variants},
            "variants": [{"name": n, "eligible": True} for n, *_ in variants],
        },
    }


class Fake:
    """Objects by (kind, namespace, name). The caller may read everything and write only ``writable``
    namespaces: SelfSubjectAccessReview says so, and a patch elsewhere is refused (403) like RBAC."""

    namespace = "team-a"

    def __init__(
        self,
        objs: list[tuple[str, dict[str, Any]]],
        writable: set[str],
        operator: Callable[[Fake], None] | None = None,
    ) -> None:
        self.objs = {(k, o["metadata"]["namespace"], o["metadata"]["name"]): o for k, o in objs}
        self.writable, self.operator = writable, operator
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.reviews: list[tuple[str, str, str]] = []

    def current_user(self) -> str:
        return "jane"

    def list(
        self, res: Any, all_namespaces: bool = False, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objs.items())
                if k == res.kind and (all_namespaces or ns == self.namespace)]  # fmt: skip

    def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        if self.operator is not None:
            self.operator(self)
        return copy.deepcopy(self.objs[(res.kind, namespace or self.namespace, name)])

    def may(self, verb: str, res: Any, namespace: str) -> str:
        self.reviews.append((verb, res.plural, namespace))
        return "" if namespace in self.writable else f"you may not {verb} {res.qualified} in {namespace}"

    def merge_patch(
        self, res: Any, name: str, patch: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        ns = namespace or self.namespace
        if ns not in self.writable:
            raise ClusterError("Error from server (Forbidden): no", 403)
        self.patches.append((ns, name, patch))
        key = (res.kind, ns, name)
        self.objs[key] = apply_merge_patch(self.objs[key], patch)
        return copy.deepcopy(self.objs[key])


def the_operator(f: Fake) -> None:
    """Moves every endpoint's traffic off quarantined versions (the newest unaffected takes it)."""
    for (k, ns, _), ep in f.objs.items():
        if k != "ModelEndpoint":
            continue

        def quarantined(v: dict[str, Any], ns: str = ns) -> bool:
            ann = f.objs[("ModelVersion", ns, f"fraud-v{v['version']}")]["metadata"]["annotations"]
            return R.QUARANTINED_ANNOTATION in ann

        bad = {v["name"] for v in ep["spec"]["variants"] if quarantined(v)}
        ok = [v["name"] for v in ep["spec"]["variants"] if v["name"] not in bad]
        if bad and ok:
            ep["status"]["effectiveWeights"] = {
                v["name"]: (100 if v["name"] == ok[0] else 0) for v in ep["spec"]["variants"]
            }


def cluster(operator: Callable[[Fake], None] | None = the_operator) -> Fake:
    return Fake(
        [
            ("ModelVersion", mv("team-a", "2.4.1")),
            ("ModelVersion", mv("team-a", "2.3.8", GOOD, commit="1234567")),
            ("ModelVersion", mv("team-b", "2.4.1")),
            (
                "ModelEndpoint",
                endpoint("team-a", "fraud", ("canary", "2.4.1", 100, 100), ("stable", "2.3.8", 0, 0)),
            ),
            ("ModelEndpoint", endpoint("team-b", "fraud", ("only", "2.4.1", 100, 100))),
        ],
        writable={"team-a"},
        operator=operator,
    )


def run(monkeypatch: pytest.MonkeyPatch, fake: Fake, *args: str) -> Any:
    monkeypatch.setattr(context, "Cluster", lambda *a, **k: fake)
    return CliRunner().invoke(app, list(args))


# ------------------------------------------------------------------------------------------- pure
@pytest.mark.parametrize(
    ("dataset", "commit", "version", "says"),
    [
        (None, None, None, "exactly one of"),
        (BAD, "abcdef1", None, "exactly one of"),
        ("nover", None, None, "NAME@VERSION"),
        (None, "zz", None, "not a git commit"),
    ],
)
def test_a_malformed_or_missing_selector_is_a_usage_error(
    dataset: str | None, commit: str | None, version: str | None, says: str
) -> None:
    with pytest.raises(Refused, match=says) as e:
        QP.selector_of(dataset, commit, version)
    assert e.value.code == 2


def test_the_patch_adds_the_selector_to_those_in_force_with_the_caller_and_a_precondition() -> None:
    obj = mv("team-a", "2.4.1", **{R.QUARANTINED_ANNOTATION: '["commit=abcdef1"]'})
    patch = QP.quarantine_patch(obj, Q.parse("dataset", BAD), "leak", "jane")
    ann = patch["metadata"]["annotations"]
    assert json.loads(ann[R.QUARANTINED_ANNOTATION]) == ["commit=abcdef1", f"dataset={BAD}"]
    assert (ann[R.QUARANTINED_BY_ANNOTATION], ann[R.QUARANTINE_REASON_ANNOTATION]) == ("jane", "leak")
    assert patch["metadata"]["resourceVersion"] == "1" and "spec" not in patch  # never a spec


def test_lifting_the_last_selector_removes_the_annotation() -> None:
    obj = mv("team-a", "2.4.1", **{R.QUARANTINED_ANNOTATION: f'["dataset={BAD}"]'})
    patch = QP.lift_patch(obj, Q.parse("dataset", BAD), "clean", "bob")
    assert patch["metadata"]["annotations"][R.QUARANTINED_ANNOTATION] is None


def test_the_git_change_removes_the_affected_variants_at_the_weights_routed_after() -> None:
    ep = endpoint("team-a", "fraud", ("canary", "2.4.1", 100, 100), ("stable", "2.3.8", 0, 0))
    hit = Q.endpoint_hit(QP.endpoint_view(ep), frozenset({"fraud-v2.4.1"}))
    assert hit is not None
    assert QP.git_change(ep, hit) == {
        "spec": {"variants": [{"name": "stable", "version": "2.3.8", "weight": 100}]}
    }


# ---------------------------------------------------------------------------------------- command
def test_dry_run_lists_the_blast_radius_and_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = cluster()
    r = run(monkeypatch, fake, "quarantine", "--dataset", BAD, "-A", "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert fake.patches == [] and out["dryRun"] is True
    assert [v["name"] for v in out["versions"]] == ["fraud-v2.4.1"]
    (ep,) = out["endpoints"]
    assert (ep["namespace"], ep["weightsBefore"], ep["weightsAfter"]) == (
        "team-a",
        {"canary": 100},
        {"stable": 100},
    )
    assert ep["gitChange"] == {"spec": {"variants": [{"name": "stable", "version": "2.3.8", "weight": 100}]}}
    assert out["skippedNamespaces"] == {
        "team-b": "you may not patch modelversions.modelversioning.io in team-b"
    }


def test_a_tenant_that_can_read_but_not_write_a_namespace_quarantines_nothing_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = cluster()
    r = run(
        monkeypatch, fake, "quarantine", "--dataset", BAD, "-A", "--reason", "labels leaked", "-o", "json"
    )
    assert r.exit_code == 0, r.output
    assert [(ns, name) for ns, name, _ in fake.patches] == [("team-a", "fraud-v2.4.1")]
    assert (
        R.QUARANTINED_ANNOTATION
        not in fake.objs[("ModelVersion", "team-b", "fraud-v2.4.1")]["metadata"]["annotations"]
    )
    out = json.loads(r.stdout)
    assert out["written"] == ["team-a/fraud-v2.4.1"] and out["endpoints"][0]["observed"] == {
        "canary": 0,
        "stable": 100,
    }
    assert ("patch", "modelversions", "team-b") in fake.reviews


def test_only_unwritable_namespaces_match_refuses_and_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = cluster()
    fake.writable = set()
    r = run(monkeypatch, fake, "quarantine", "--dataset", BAD, "-A", "--reason", "x")
    assert r.exit_code == 1 and fake.patches == [] and "you may not" in r.output


def test_a_selector_matching_nothing_exits_4(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = cluster()
    r = run(monkeypatch, fake, "quarantine", "--commit", "fffffff", "-A", "--reason", "x")
    assert r.exit_code == QP.EXIT_NO_MATCH and fake.patches == [] and "matches commit=fffffff" in r.output


def test_a_quarantine_without_a_reason_is_refused_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = cluster()
    r = run(monkeypatch, fake, "quarantine", "--dataset", BAD)
    assert r.exit_code == 2 and fake.patches == [] and fake.reviews == []


def test_an_endpoint_left_with_nothing_eligible_is_said_in_the_dry_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = cluster()
    fake.writable = {"team-a", "team-b"}
    r = run(monkeypatch, fake, "quarantine", "--dataset", BAD, "-A", "--dry-run")
    assert r.exit_code == 0
    assert "team-b/fraud" in r.stdout and "x-model-unavailable: quarantined" in r.stdout
    assert "no unaffected variant remains" in r.stdout


def test_a_route_not_moved_in_time_exits_3_the_quarantine_stays_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = cluster(operator=None)
    r = run(monkeypatch, fake, "quarantine", "--dataset", BAD, "--reason", "x", "--timeout", "0")
    assert r.exit_code == 3 and "team-a/fraud" in r.output and len(fake.patches) == 1


def test_a_conflict_is_read_again_and_keeps_the_other_selector(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = cluster()
    real = fake.merge_patch
    calls = {"n": 0}

    def racing(res: Any, name: str, patch: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:  # someone quarantined it by commit meanwhile
            key = ("ModelVersion", namespace or "team-a", name)
            fake.objs[key]["metadata"]["annotations"][R.QUARANTINED_ANNOTATION] = '["commit=abcdef1"]'
            fake.objs[key]["metadata"]["resourceVersion"] = "2"
            raise ClusterError("Error from server (Conflict): changed", 409)
        return real(res, name, patch, namespace)

    monkeypatch.setattr(fake, "merge_patch", racing)
    r = run(monkeypatch, fake, "quarantine", "--dataset", BAD, "--reason", "x", "--no-wait")
    assert r.exit_code == 0, r.output
    ann = fake.objs[("ModelVersion", "team-a", "fraud-v2.4.1")]["metadata"]["annotations"]
    assert json.loads(ann[R.QUARANTINED_ANNOTATION]) == ["commit=abcdef1", f"dataset={BAD}"]


def test_unquarantine_lifts_only_this_selector_where_the_caller_may_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    both = json.dumps(["commit=abcdef1", f"dataset={BAD}"])
    fake = Fake(
        [
            ("ModelVersion", mv("team-a", "2.4.1", **{R.QUARANTINED_ANNOTATION: both})),
            (
                "ModelVersion",
                mv("team-a", "2.4.0", **{R.QUARANTINED_ANNOTATION: json.dumps([f"dataset={BAD}"])}),
            ),
            (
                "ModelVersion",
                mv("team-b", "2.4.1", **{R.QUARANTINED_ANNOTATION: json.dumps([f"dataset={BAD}"])}),
            ),
        ],
        writable={"team-a"},
    )
    r = run(
        monkeypatch,
        fake,
        "unquarantine",
        "--dataset",
        BAD,
        "-A",
        "--reason",
        "clean after audit",
        "-o",
        "json",
    )
    assert r.exit_code == 0, r.output
    anns = {(ns, n): o["metadata"]["annotations"] for (_, ns, n), o in fake.objs.items()}
    assert json.loads(anns[("team-a", "fraud-v2.4.1")][R.QUARANTINED_ANNOTATION]) == ["commit=abcdef1"]
    assert R.QUARANTINED_ANNOTATION not in anns[("team-a", "fraud-v2.4.0")]
    assert anns[("team-a", "fraud-v2.4.0")][R.QUARANTINED_BY_ANNOTATION] == "jane"
    assert R.QUARANTINED_ANNOTATION in anns[("team-b", "fraud-v2.4.1")]  # not theirs to lift
    assert json.loads(r.stdout)["skippedNamespaces"] == {
        "team-b": "you may not patch modelversions.modelversioning.io in team-b"
    }


def test_unquarantine_of_a_selector_in_force_nowhere_exits_4(monkeypatch: pytest.MonkeyPatch) -> None:
    r = run(monkeypatch, cluster(), "unquarantine", "--dataset", BAD, "--reason", "x")
    assert r.exit_code == QP.EXIT_NO_MATCH


def test_describe_shows_the_quarantine_in_force_and_the_last_lift() -> None:
    from modelversioning.cli.models import render, terminal, views

    obj = mv("team-a", "2.4.1")
    on = {"state": "Quarantined", "selectors": [f"dataset={BAD}"], "reason": "leak", "by": "jane", "at": "t1"}
    obj["status"]["quarantine"] = on
    text = terminal.to_text(render.describe_renderable(views.describe_view(obj)))
    assert f"dataset={BAD}" in text
    assert "Quarantine" in text and "jane" in text and "leak" in text
    obj["status"]["quarantine"] = {**on, "state": "Lifted", "selectors": [], "by": "bob", "reason": "clean"}
    text = terminal.to_text(render.describe_renderable(views.describe_view(obj)))
    assert "lifted by bob" in text and "clean" in text
    del obj["status"]["quarantine"]
    assert "Quarantine" not in terminal.to_text(render.describe_renderable(views.describe_view(obj)))
