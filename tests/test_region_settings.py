"""The operator's region (issue 30, step 1): a setting, validated; the chart renders it into the
operator's config and as a `region` target label of the ServiceMonitor; unset, neither."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from modelversioning import metrics
from modelversioning.api.settings import Settings
from test_chart_networkpolicy import template


@pytest.mark.parametrize("bad", ["EU-West", "eu_west", "-eu", "eu-", "", "e" * 64])
def test_a_region_that_is_no_dns_label_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="region"):
        Settings.model_validate({"region": bad})


def test_the_region_is_optional() -> None:
    assert Settings().region is None
    assert Settings.model_validate({"region": "eu-west"}).region == "eu-west"


def test_no_info_series_without_a_region() -> None:
    """The info series exists only once startup set it (handlers/startup.py: only with a region)."""
    assert not [s for s in metrics.OPERATOR_INFO.collect()[0].samples if s.value]


def _config(docs: list[dict]) -> dict:
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config"))
    return yaml.safe_load(cm["data"]["config.yaml"])


def _monitor(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "ServiceMonitor")


def test_the_chart_renders_the_region_into_the_config_and_as_a_target_label() -> None:
    docs = template("config.region=eu-west", "metrics.serviceMonitor.enabled=true")
    cfg = _config(docs)
    assert cfg["region"] == "eu-west"
    Settings.model_validate(cfg)  # what the operator loads
    ep = _monitor(docs)["spec"]["endpoints"][0]
    assert {"action": "replace", "targetLabel": "region", "replacement": "eu-west"} in ep["relabelings"]


def test_the_chart_without_a_region_renders_neither() -> None:
    docs = template("metrics.serviceMonitor.enabled=true")
    assert "region" not in _config(docs)
    assert "relabelings" not in _monitor(docs)["spec"]["endpoints"][0]


def test_a_region_and_the_users_relabelings_both_apply() -> None:
    docs = template(
        "config.region=us-east",
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.relabelings[0].targetLabel=team",
        "metrics.serviceMonitor.relabelings[0].replacement=ml",
    )
    rel = _monitor(docs)["spec"]["endpoints"][0]["relabelings"]
    assert [r["targetLabel"] for r in rel] == ["region", "team"]
