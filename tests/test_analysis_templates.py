"""The built-in analysis templates select the endpoint's own series: Traefik's backend label, built the
way Traefik 3.7's Gateway provider builds it, matched with Prometheus' semantics (a fully anchored
regex) after the query's PromQL string escaping is undone."""

from __future__ import annotations

import hashlib
import re

import pytest

from modelversioning.analysis.templates import Vars, builtin, render_query

V = Vars("ml", "fraud", "canary", "2.4.1", "fraud-canary-7f3a9c2e1b", "2m")


def router_hash(ns: str, route: str, rule: str = "PathPrefix(`/`)") -> str:
    """Traefik 3.7's makeRouterName: sha256 over the length-prefixed parts and the rule, formatted with
    Go's `%.10x` (the first 10 bytes: 20 hex digits)."""
    h = hashlib.sha256()
    for part in (ns, route, "gateways", "public", "web", "0"):
        h.update(f"{len(part)}:{part}".encode())
    h.update(rule.encode())
    return h.digest()[:10].hex()


def traefik_label(ns: str, route: str, backend_ns: str, service: str, hash20: str | None = None) -> str:
    """pkg/provider/kubernetes/gateway: makeRouterName + loadService (+ the provider suffix)."""
    router = f"httproute-{ns}-{route}-gw-gateways-public-ep-web-0-{hash20 or router_hash(ns, route)}"
    return f"{router}-svc-{backend_ns}-{service}-0@kubernetesgateway"


def selector(template: str, v: Vars = V) -> re.Pattern[str]:
    query = render_query(builtin(template, "traefik", 0.99), v)
    found = re.search(r'service=~"((?:[^"\\]|\\.)*)"', query)
    assert found is not None, query
    pattern = re.sub(r"\\(.)", r"\1", found.group(1))  # the PromQL string's own escaping
    return re.compile(pattern)


@pytest.mark.parametrize("template", ["error-rate", "latency"])
def test_traefik_selects_the_endpoints_route_and_slot_service(template: str) -> None:
    sel = selector(template)
    assert sel.fullmatch(traefik_label("ml", "fraud", "ml", V.service))
    assert sel.fullmatch(traefik_label("ml", "fraud", "ml", V.service, "abcdef0123" * 2))
    # Traefik 3.7 writes 20 hex digits (Go's %.10x of a byte slice): a 10-digit hash is not its label
    assert not sel.fullmatch(traefik_label("ml", "fraud", "ml", V.service, "abcdef0123"))


@pytest.mark.parametrize(
    "label",
    [
        # another namespace's Service named to end like ours: the old `.*-svc-ml-<Service>-N` matched it
        traefik_label("evil", "r", "evil", f"x-svc-ml-{V.service}"),
        traefik_label("evil", "r", "evil", f"x-{'0123456789' * 2}-svc-ml-{V.service}"),
        # our Service in a route of another endpoint, or of another namespace (a ReferenceGrant)
        traefik_label("ml", "other", "ml", V.service),
        traefik_label("evil", "fraud", "ml", V.service),
        # a namespace whose name merely starts like ours, and another Service with our name as prefix
        traefik_label("ml2", "fraud", "ml2", V.service),
        traefik_label("ml", "fraud", "ml", V.service + "-x"),
        traefik_label("ml", "fraud", "ml", V.service).replace("@kubernetesgateway", "@file"),
    ],
)
def test_traefik_does_not_select_other_series(label: str) -> None:
    assert not selector("error-rate").fullmatch(label)


def test_regex_variables_are_escaped_for_regex_and_promql() -> None:
    v = Vars("n", "e.p", "c", "1", 'a+b"c', "1m")
    q = render_query('x{s=~"{{endpoint|re}}-{{service|re}}"}', v)
    assert q == 'x{s=~"e\\\\.p-a\\\\+b\\"c"}'
    sel = selector("error-rate", v)
    assert sel.fullmatch(traefik_label("n", "e.p", "n", 'a+b"c'))
    assert not sel.fullmatch(traefik_label("n", "eXp", "n", 'a+b"c'))
