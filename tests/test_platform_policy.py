"""ModelPlatformPolicy: which policies select a namespace and what their floors allow (pure)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelversioning.api.platform import ModelPlatformPolicySpec
from modelversioning.domain.platform_policy import (
    DEFAULT_TRUSTED_SOURCES,
    Floors,
    analysis_violations,
    canonical_uri,
    effective_required_stage,
    endpoint_violations,
    floors_for,
    promotion_untrusted,
    selector_matches,
)


@pytest.mark.parametrize(
    ("selector", "labels", "want"),
    [
        ({}, {}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchLabels": {"team": "a"}}, {}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod"]}]},
            {"tier": "prod"},
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod"]}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["dev"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["dev"]}]},
            {"tier": "dev"},
            False,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": "x"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "Bogus"}]}, {"tier": "x"}, False),
    ],
)
def test_selector(selector: dict, labels: dict, want: bool) -> None:
    assert selector_matches(selector, labels) is want


def test_no_policy_means_no_floor_and_no_deletion() -> None:
    f = floors_for("team-a", {}, [])
    assert f == Floors()
    assert f.host_allowed("anything.example.com")
    assert f.toleration_allowed({"key": "gpu", "operator": "Exists"})
    assert f.approver_allowed([])
    assert f.trusted_sources == DEFAULT_TRUSTED_SOURCES
    assert f.storage_root_of("s3://models/team-a/fraud/1.0.0/model.bin") is None


def _policies() -> list[tuple[str, dict]]:
    return [
        (
            "all",
            {
                "serving": {"minRequiredStage": "staging", "allowedHosts": ["*.example.com"]},
                "analysis": {"minInterval": "30s", "trustedSources": ["traefik", "modelServer"]},
                "retention": {"storageRoots": ["s3://models/{namespace}/"]},
            },
        ),
        (
            "prod",
            {
                "namespaceSelector": {"matchLabels": {"tier": "prod"}},
                "serving": {"minRequiredStage": "production", "allowedHosts": ["api.example.com"]},
                "analysis": {"minInterval": "2m", "trustedSources": ["traefik", "istio"]},
                "approvals": {"approverGroups": ["ml-approvers"]},
                "retention": {"storageRoots": ["s3://models/team-a/", "s3://other/"]},
            },
        ),
    ]


def test_every_selecting_policy_applies_and_the_strictest_wins() -> None:
    f = floors_for("team-a", {"tier": "prod"}, _policies())
    assert f.policies == ("all", "prod")
    assert f.min_required_stages == ("staging", "production")
    assert f.host_allowed("api.example.com")
    assert not f.host_allowed("web.example.com")  # allowed by 'all', not by 'prod'
    assert f.min_interval_seconds == 120
    assert f.trusted_sources == {"traefik"}
    assert not f.approver_allowed(["system:authenticated"])
    assert f.approver_allowed(["system:authenticated", "ml-approvers"])
    assert f.storage_root_of("s3://models/team-a/fraud/model.bin") == "s3://models/team-a/"
    assert f.storage_root_of("s3://other/fraud/model.bin") is None  # outside 'all''s root


def test_a_policy_that_does_not_select_the_namespace_does_not_apply() -> None:
    f = floors_for("team-b", {"tier": "dev"}, _policies())
    assert f.policies == ("all",)
    assert f.host_allowed("web.example.com")
    assert f.storage_root_of("s3://models/team-b/x/model.bin") == "s3://models/team-b/"
    assert f.storage_root_of("s3://models/team-a/x/model.bin") is None  # another namespace's root


@pytest.mark.parametrize(
    "uri",
    [
        "s3://models/team-a/",  # the root itself
        "s3://models/team-a",
        "s3://models/team-a/../team-b/model.bin",
        "s3://models/team-a/./x",
        "s3://models/team-a//x",
        "s3://models/team-a/%2e%2e/team-b/x",
        "s3://models/team-ab/x",
        "file:///models/team-a/x",
    ],
)
def test_uris_that_are_not_strictly_under_the_root(uri: str) -> None:
    f = floors_for("team-a", {}, _policies()[:1])
    assert f.storage_root_of(uri) is None


def test_scheme_aliases_name_the_same_store() -> None:
    f = floors_for("team-a", {}, _policies()[:1])
    assert f.storage_root_of("s3a://models/team-a/x/model.bin") == "s3://models/{namespace}/".replace(
        "{namespace}", "team-a"
    )
    assert canonical_uri("S3A://b/k") == "s3://b/k"


def test_tolerations_must_equal_an_allowed_one() -> None:
    f = floors_for(
        "ns",
        {},
        [
            (
                "p",
                {
                    "serving": {
                        "allowedTolerations": [
                            {
                                "key": "gpu",
                                "operator": "Exists",
                                "effect": "NoSchedule",
                                "tolerationSeconds": 60,
                            }
                        ]
                    }
                },
            )
        ],
    )
    assert f.toleration_allowed(
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 30}
    )
    assert not f.toleration_allowed(
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    )  # forever > 60
    assert not f.toleration_allowed({"operator": "Exists"})  # tolerates every taint
    empty = floors_for("ns", {}, [("p", {"serving": {"allowedTolerations": []}})])
    assert not empty.toleration_allowed({"key": "gpu", "operator": "Exists"})


def test_api_model_refuses_bad_roots_and_hosts() -> None:
    ok = ModelPlatformPolicySpec.model_validate({"retention": {"storageRoots": ["s3://m/{namespace}/"]}})
    assert ok.retention is not None
    with pytest.raises(ValidationError):
        ModelPlatformPolicySpec.model_validate({"retention": {"storageRoots": ["s3://m/team"]}})
    with pytest.raises(ValidationError):
        ModelPlatformPolicySpec.model_validate({"serving": {"allowedHosts": ["*"]}})
    with pytest.raises(ValidationError):
        ModelPlatformPolicySpec.model_validate({"serving": {"minRequiredStage": "Prod!"}})


def test_approver_must_be_in_a_group_of_every_policy_that_names_groups() -> None:
    two = [
        ("a", {"approvals": {"approverGroups": ["ml-approvers"]}}),
        ("b", {"approvals": {"approverGroups": ["risk"]}}),
    ]
    f = floors_for("ns", {}, two)
    assert not f.approver_allowed(["ml-approvers"])
    assert not f.approver_allowed(["risk"])
    assert f.approver_allowed(["risk", "ml-approvers"])


def test_gather_reads_policies_and_namespace_labels_from_the_cache() -> None:
    from modelversioning.handlers.policy import floors
    from modelversioning.handlers.store import Store

    store = Store()
    store.upsert(
        "Namespace", {"metadata": {"name": "team-a", "resourceVersion": "1", "labels": {"tier": "prod"}}}
    )
    for name, spec in _policies():
        store.upsert(
            "ModelPlatformPolicy", {"metadata": {"name": name, "resourceVersion": "2"}, "spec": spec}
        )
    assert floors(store, "team-a").policies == ("all", "prod")
    assert floors(store, "team-b").policies == ("all",)  # no labels cached: only the empty selector


@pytest.mark.parametrize(
    ("requested", "floors", "want"),
    [
        ("candidate", (), "candidate"),
        ("candidate", ("staging",), "staging"),
        ("production", ("staging",), "production"),  # the tenant is stricter: kept
        ("staging", ("staging", "production"), "production"),
        ("candidate", ("validated",), "candidate"),  # a stage without serving rank sets no floor
    ],
)
def test_required_stage_is_raised_to_the_floor_never_lowered(
    requested: str, floors: tuple, want: str
) -> None:
    assert effective_required_stage(requested, Floors(min_required_stages=floors)) == want


def test_endpoint_violations_name_each_host_and_toleration() -> None:
    f = Floors(
        policies=("p",),
        allowed_hosts=(("*.team-a.example.com",),),
        allowed_tolerations=(({"key": "gpu", "operator": "Exists"},),),
    )
    assert endpoint_violations(f, ["m.team-a.example.com"], [{"key": "gpu", "operator": "Exists"}]) == []
    got = endpoint_violations(f, ["team-a.example.com", "x.team-b.example.com"], [{"operator": "Exists"}])
    assert got == [
        "host 'team-a.example.com' is not allowed by policy p",
        "host 'x.team-b.example.com' is not allowed by policy p",
        "toleration operator=Exists is not allowed by policy p",
    ]


_TRAEFIK = {"name": "errors", "template": "error-rate", "source": "traefik", "max": 0.01}


@pytest.mark.parametrize(
    ("floors", "metrics", "why"),
    [
        (Floors(), [_TRAEFIK], None),
        (Floors(), [], "no metric was measured"),
        (Floors(), [{"name": "q", "query": "vector(0)", "max": 1e9}], "free query"),
        (Floors(), [{**_TRAEFIK, "source": "modelServer"}], "not a trusted source"),
        (
            Floors(),
            [{"name": "d", "template": "latency", "max": 1}],
            "not a trusted source",
        ),  # default source
        (Floors(trusted_sources=frozenset({"modelServer"})), [{**_TRAEFIK, "source": "modelServer"}], None),
        (Floors(promotion_ceilings={"error-rate": 0.05}), [{**_TRAEFIK, "max": 1e9}], "looser"),
        (Floors(promotion_ceilings={"error-rate": 0.05}), [{**_TRAEFIK, "max": 0.05}], None),
        (Floors(promotion_ceilings={"error-rate": 0.05}), [{**_TRAEFIK, "max": None}], "looser"),
        (Floors(), [_TRAEFIK, {"name": "q", "query": "up", "max": 1}], "free query"),
    ],
)
def test_promotion_is_earned_only_on_trusted_platform_bounded_metrics(
    floors: Floors, metrics: list, why: str | None
) -> None:
    got = promotion_untrusted(floors, metrics)
    assert (got is None) if why is None else (got is not None and why in got)


@pytest.mark.parametrize(
    ("floors", "interval", "metrics", "want"),
    [
        (Floors(), 2, [{"name": "q", "query": "up"}], []),
        (
            Floors(policies=("p",), min_interval_seconds=30),
            10,
            [],
            ["analysis interval 10s is below the minimum 30s"],
        ),
        (Floors(policies=("p",), min_interval_seconds=30), 30, [], []),
        (
            Floors(policies=("p",), free_queries_refused=True),
            30,
            [{"name": "q", "query": "up"}],
            ["q are free queries"],
        ),
        (
            Floors(policies=("p",), free_queries_refused=True),
            30,
            [{"name": "e", "template": "error-rate"}],
            [],
        ),
    ],
)
def test_analysis_violations(floors: Floors, interval: int, metrics: list, want: list[str]) -> None:
    got = analysis_violations(floors, interval, metrics)
    assert len(got) == len(want) and all(w in g for w, g in zip(want, got, strict=True)), got


def test_free_queries_refused_by_any_selecting_policy() -> None:
    f = floors_for(
        "ns",
        {},
        [("a", {"analysis": {"freeQueries": "Allowed"}}), ("b", {"analysis": {"freeQueries": "Refused"}})],
    )
    assert f.free_queries_refused and floors_for("ns", {}, [("a", {})]).free_queries_refused is False
