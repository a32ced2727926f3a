"""The status merge patch the operator sends: what the API server then stores is what we meant."""

from __future__ import annotations

from modelversioning.domain.merge_patch import apply_merge_patch
from modelversioning.handlers.kube import status_merge_patch


def test_a_key_we_no_longer_report_is_removed_at_any_depth() -> None:
    old = {
        "effectiveWeights": {"main": 100, "canary": 0},
        "closed": None,
        "rollout": {"phase": "Done", "step": 3},
    }
    new = {"effectiveWeights": {}, "rollout": {"phase": "Done"}}
    patch = status_merge_patch(new, old)
    assert patch == {
        "effectiveWeights": {"main": None, "canary": None},
        "rollout": {"phase": "Done", "step": None},
        "closed": None,
    }
    assert apply_merge_patch(old, patch) == new


def test_lists_and_scalars_are_replaced_whole() -> None:
    old = {"conditions": [{"type": "Ready"}], "stage": "production"}
    new = {"conditions": [], "stage": "archived", "servedBy": [{"endpoint": "e"}]}
    assert apply_merge_patch(old, status_merge_patch(new, old)) == new
    assert status_merge_patch(new, None) == new
