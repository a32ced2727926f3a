"""The watch cache's indexes: by controlling endpoint and by model (handlers/store.py)."""

from __future__ import annotations

import sys
from typing import Any

from modelversioning.handlers.store import Store, kept


def mv(name: str, model: str, rv: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "modelversioning.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "uid": f"u-{name}"},
        "spec": {"model": model, "version": "1.0.0"},
    }


def names(pairs: list[tuple[tuple[str, str], dict[str, Any]]]) -> list[str]:
    return [n for (_, n), _ in pairs]


def test_of_model_finds_exactly_the_objects_of_that_model_and_follows_changes() -> None:
    s = Store()
    s.upsert("ModelVersion", mv("fraud-v1", "fraud"))
    s.upsert("ModelVersion", mv("fraud-v2", "fraud"))
    s.upsert("ModelVersion", mv("chat-v1", "chat"))
    assert names(s.of_model("ModelVersion", "ns", "fraud")) == ["fraud-v1", "fraud-v2"]
    assert names(s.of_model("ModelVersion", "ns", "chat")) == ["chat-v1"]
    assert s.of_model("ModelVersion", "other", "fraud") == []
    assert s.of_model("ModelEndpoint", "ns", "fraud") == []
    # a newer version of an object that names another model moves between the index entries
    s.upsert("ModelVersion", mv("fraud-v2", "chat", rv="2"))
    assert names(s.of_model("ModelVersion", "ns", "fraud")) == ["fraud-v1"]
    assert names(s.of_model("ModelVersion", "ns", "chat")) == ["chat-v1", "fraud-v2"]
    # an older event is ignored, index included
    s.upsert("ModelVersion", mv("fraud-v2", "fraud", rv="1"))
    assert names(s.of_model("ModelVersion", "ns", "chat")) == ["chat-v1", "fraud-v2"]
    s.delete("ModelVersion", "ns", "fraud-v1")
    assert s.of_model("ModelVersion", "ns", "fraud") == []
    assert s._models.get(("ModelVersion", "ns", "fraud")) is None  # no empty entries left behind


def test_of_model_returns_the_cached_bodies() -> None:
    s = Store()
    s.upsert("ModelVersion", mv("fraud-v1", "fraud"))
    ((key, body),) = s.of_model("ModelVersion", "ns", "fraud")
    assert key == ("ns", "fraud-v1") and body == s.get("ModelVersion", "ns", "fraud-v1")
    assert s.model_keys("ModelVersion", "ns", "fraud") == [key]


def test_notes_give_every_versions_stage_without_reading_the_objects() -> None:
    s = Store()
    a, b = mv("fraud-v1", "fraud"), mv("fraud-v2", "fraud")
    a["status"] = {"stage": "production"}
    s.upsert("ModelVersion", a)
    s.upsert("ModelVersion", b)
    assert sorted(s.notes("ModelVersion")) == [
        (("ns", "fraud-v1"), "fraud", "production"),
        (("ns", "fraud-v2"), "fraud", None),
    ]


def test_version_gauges_count_versions_by_model_and_stage() -> None:
    from modelversioning import metrics
    from modelversioning.handlers.runtime import Operator

    s = Store()
    for name, stage in (("fraud-v1", "production"), ("fraud-v2", "production"), ("fraud-v3", None)):
        body = mv(name, "fraud")
        if stage:
            body["status"] = {"stage": stage}
        s.upsert("ModelVersion", body)
    op = Operator.__new__(Operator)
    op.store = s
    op.update_version_gauges()
    assert metrics.VERSIONS.labels("ns", "fraud", "production")._value.get() == 2
    assert metrics.VERSIONS.labels("ns", "fraud", "unknown")._value.get() == 1


def _read(s: Store, what: str) -> None:
    if what == "get":
        s.get("ModelVersion", "ns", "fraud-v1")
    elif what == "has":
        s.has("ModelVersion", "ns", "fraud-v1")
    elif what == "rv":
        assert s.rv("ModelVersion", "ns", "fraud-v1") == "1"
    elif what == "blob":
        assert s.blob("ModelVersion", "ns", "fraud-v1")
    elif what == "of_model":
        s.of_model("ModelVersion", "ns", "fraud")
    elif what == "model_keys":
        s.model_keys("ModelVersion", "ns", "fraud")
    elif what == "observed":
        s.is_observed("ModelVersion", "ns", "fraud-v1")
    else:
        s.keys("ModelVersion")


# (read, change after it, is the read unchanged afterwards?)
CASES = [
    ("get", "nothing", True),
    ("get", "newer fraud-v1", False),
    ("get", "delete fraud-v1", False),
    ("get", "another model's version", True),
    ("has", "delete fraud-v1", False),
    ("rv", "newer fraud-v1", False),  # the read of that version, as a get
    ("rv", "another model's version", True),
    ("blob", "newer fraud-v1", False),
    ("blob", "delete fraud-v1", False),
    ("of_model", "newer fraud-v1", False),
    ("of_model", "new fraud version", False),
    ("of_model", "another model's version", True),
    ("model_keys", "newer fraud-v1", True),  # names only
    ("model_keys", "new fraud version", False),
    ("observed", "our write of fraud-v1", False),
    ("observed", "another model's version", True),
    ("keys", "nothing", False),  # a read of a whole kind is never taken as unchanged
]


def test_recorded_reads_are_unchanged_exactly_while_they_would_return_the_same() -> None:
    for what, change, same in CASES:
        s = Store()
        s.upsert("ModelVersion", mv("fraud-v1", "fraud"))
        with s.recording() as reads:
            _read(s, what)
        assert reads, what
        if change == "newer fraud-v1":
            s.upsert("ModelVersion", mv("fraud-v1", "fraud", rv="2"))
        elif change == "delete fraud-v1":
            s.delete("ModelVersion", "ns", "fraud-v1")
        elif change == "another model's version":
            s.upsert("ModelVersion", mv("chat-v1", "chat"))
        elif change == "new fraud version":
            s.upsert("ModelVersion", mv("fraud-v2", "fraud"))
        elif change == "our write of fraud-v1":
            s.upsert("ModelVersion", mv("fraud-v1", "fraud", rv="2"), observed=False)
        assert s.unchanged(reads) is same, (what, change)
    s = Store()
    s.get("ModelVersion", "ns", "x")  # outside recording(): nothing is recorded anywhere
    with s.recording() as reads:
        pass
    assert reads == []


def test_recorded_reads_are_kept_once_each_with_their_names_interned() -> None:
    s = Store()
    s.upsert("ModelVersion", mv("fraud-v1", "fraud"))
    with s.recording() as reads:
        s.get("ModelVersion", "ns", "".join(["fraud", "-v1"]))  # names as a body's: not interned
        s.rv("ModelVersion", "ns", "".join(["fraud", "-v1"]))  # the same read
        s.of_model("ModelVersion", "ns", "fraud")
    assert len(reads) == 3
    out = kept(reads)
    assert out == (("get", "ModelVersion", "ns", "fraud-v1", "1"), reads[2])
    assert out[0][3] is sys.intern("fraud-v1")
    assert s.unchanged(out)


def test_a_write_answer_cached_after_the_deletion_event_does_not_bring_the_object_back(
    monkeypatch: Any,
) -> None:
    """The registry e2e saw a deleted version's record never marked removed under load: a reconcile
    wrote the version (rv 6), the version was deleted (rv 7), the DELETED event emptied the cache,
    and then the reconcile cached its write's answer: the version was back in the cache for good,
    so the Model's reconcile saw it live. Through the real watch handler."""
    import asyncio
    from types import SimpleNamespace

    from modelversioning.handlers import runtime, watch

    added: list[tuple[str, str, str]] = []
    op = SimpleNamespace(
        store=Store(),
        queue=SimpleNamespace(add=lambda key, low=False: added.append(key)),
        endpoints_of_model=lambda ns, model: None,
    )
    monkeypatch.setattr(runtime, "OP", op)
    s: Store = op.store
    s.upsert("Model", {"metadata": {"name": "fraud", "namespace": "ns", "resourceVersion": "1"}})
    s.upsert("ModelVersion", mv("fraud-v1", "fraud", rv="5"))
    deleted = mv("fraud-v1", "fraud", rv="7")
    asyncio.run(watch.modelversion_event(event={"type": "DELETED", "object": deleted}, body=deleted))
    assert ("Model", "ns", "fraud") in added and s.get("ModelVersion", "ns", "fraud-v1") is None
    s.upsert("ModelVersion", mv("fraud-v1", "fraud", rv="6"), observed=False)  # the late answer
    s.upsert("ModelVersion", mv("fraud-v1", "fraud", rv="7"))  # a late copy of the deletion's own
    assert s.get("ModelVersion", "ns", "fraud-v1") is None
    assert s.of_model("ModelVersion", "ns", "fraud") == []
    # created again under the same name: a newer resourceVersion is cached as usual
    again = mv("fraud-v1", "fraud", rv="9")
    asyncio.run(watch.modelversion_event(event={"type": "ADDED", "object": again}, body=again))
    assert s.get("ModelVersion", "ns", "fraud-v1") == again
    s.delete("ModelVersion", "ns", "fraud-v1", gone_at="10")
    s.upsert("ModelVersion", mv("fraud-v1", "fraud", rv="11"))
    assert s.get("ModelVersion", "ns", "fraud-v1") is not None


def test_the_store_remembers_a_bounded_number_of_deletions() -> None:
    from modelversioning.handlers import store as store_mod

    s = Store()
    for i in range(store_mod.TOMBSTONES + 10):
        s.delete("ModelVersion", "ns", f"v{i}", gone_at=str(i + 100))
    assert len(s._gone["ModelVersion"]) == store_mod.TOMBSTONES
    s.delete("Pod", "ns", "p", gone_at="1")  # another kind's deletions push none of these out
    assert len(s._gone["ModelVersion"]) == store_mod.TOMBSTONES
    s.upsert("ModelVersion", mv("v0", "fraud", rv="50"))  # the oldest deletions are forgotten
    assert s.get("ModelVersion", "ns", "v0") is not None
    s.upsert("ModelVersion", mv(f"v{store_mod.TOMBSTONES + 9}", "fraud", rv="50"))  # the latest are not
    assert s.get("ModelVersion", "ns", f"v{store_mod.TOMBSTONES + 9}") is None


def test_a_deletion_event_arriving_after_the_object_was_created_again_keeps_the_new_one() -> None:
    """Our create's answer (rv 12) cached before the watch delivered the old object's deletion (rv 10):
    the DELETED event must not drop the new object."""
    s = Store()
    s.upsert("ModelVersion", mv("fraud-v1", "fraud", rv="12"), observed=False)
    s.delete("ModelVersion", "ns", "fraud-v1", gone_at="10")
    assert s.get("ModelVersion", "ns", "fraud-v1") is not None
    s.delete("ModelVersion", "ns", "fraud-v1", gone_at="13")  # its own deletion
    assert s.get("ModelVersion", "ns", "fraud-v1") is None
