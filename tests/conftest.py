"""Every test that runs a reconciler also checks the watch cache's projection: what the operator's
code reads from a cached object must be a field that ``store.PROJECTION`` keeps for its kind.

``Store.get``/``items``/``owned``/``of_model``/``of_slot`` hand the operator's code (not the tests' own fakes)
objects that record each key read, with its path; at the end of the test every recorded path is
checked against the projection. A reader of a dropped field (the worst bug a projection can have: a
decision made on a field that is always missing) fails the test that exercises it, whatever the
fixture holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cache_reads import OTHERS, READERS, Reads, _ours, uncovered
from modelversioning.handlers import store as store_mod


@pytest.fixture(autouse=True)
def cache_reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    """Record the operator's reads of cached objects (see the module's docstring)."""
    reads = Reads()
    if request.node.get_closest_marker("raw_cache"):
        yield reads
        return
    Store = store_mod.Store
    public = {n for n in vars(Store) if not n.startswith("_")}
    assert public <= READERS | OTHERS, (
        f"Store has new methods {sorted(public - READERS - OTHERS)}: if they hand out cached objects, "
        "record them here like get/items/owned/of_model (READERS), else add them to OTHERS"
    )
    get, items, owned, of_model = Store.get, Store.items, Store.owned, Store.of_model
    cluster_scoped, of_slot = Store.cluster_scoped, Store.of_slot

    def rec_get(self: Any, kind: str, namespace: str, name: str) -> Any:
        obj = get(self, kind, namespace, name)
        return reads.wrap(kind, obj) if obj is not None and _ours() else obj

    def rec_items(self: Any, kind: str, namespace: str | None = None) -> Iterator[Any]:
        wrap = _ours()
        for key, obj in items(self, kind, namespace):
            yield key, (reads.wrap(kind, obj) if wrap else obj)

    def rec_owned(self: Any, kind: str, namespace: str, uid: str) -> list[Any]:
        objs = owned(self, kind, namespace, uid)
        return [reads.wrap(kind, o) for o in objs] if _ours() else objs

    def rec_of_model(self: Any, kind: str, namespace: str, model: str) -> list[Any]:
        pairs = of_model(self, kind, namespace, model)
        return [(k, reads.wrap(kind, o)) for k, o in pairs] if _ours() else pairs

    def rec_cluster_scoped(self: Any, kind: str) -> list[Any]:
        pairs = cluster_scoped(self, kind)
        return [(n, reads.wrap(kind, o)) for n, o in pairs] if _ours() else pairs

    def rec_of_slot(self: Any, kind: str, namespace: str, slot: str) -> list[Any]:
        objs = of_slot(self, kind, namespace, slot)
        return [reads.wrap(kind, o) for o in objs] if _ours() else objs

    monkeypatch.setattr(Store, "cluster_scoped", rec_cluster_scoped)
    monkeypatch.setattr(Store, "of_slot", rec_of_slot)
    monkeypatch.setattr(Store, "of_model", rec_of_model)
    monkeypatch.setattr(Store, "get", rec_get)
    monkeypatch.setattr(Store, "items", rec_items)
    monkeypatch.setattr(Store, "owned", rec_owned)
    yield reads
    missing = uncovered(reads)
    if missing:
        pytest.fail(
            "the operator read fields that the watch cache's projection drops "
            "(handlers/store.py PROJECTION): " + ", ".join(missing),
            pytrace=False,
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "raw_cache: the Store hands out its own objects (identity checks), reads not recorded"
    )
    config.addinivalue_line(
        "markers", "helm: renders the chart with helm (set by this conftest, not by hand)"
    )


HELM_MODULE = "test_chart_networkpolicy"  # its `template()` renders the chart with helm


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `helm` every test of a module that renders the chart (test_chart_networkpolicy or a module
    using its functions): `./dev test` runs them once the control plane's build (which builds helm) is
    done, the others at once, with MV_NO_HELM=1 so that a chart test this rule misses fails there
    (warm or cold) instead of only on a new machine."""
    for item in items:
        module = getattr(item, "module", None)
        if module is None:
            continue
        uses = module.__name__ == HELM_MODULE or any(
            getattr(v, "__module__", None) == HELM_MODULE for v in vars(module).values() if callable(v)
        )
        if uses:
            item.add_marker(pytest.mark.helm)
