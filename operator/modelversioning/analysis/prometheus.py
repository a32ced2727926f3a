"""A minimal Prometheus HTTP API client: one instant query, one number, or Inconclusive.

Everything that is not a clean single number is *inconclusive*, never a pass: Prometheus unreachable,
a timeout, an HTTP or PromQL error, an empty result (no traffic yet), several series, NaN or Inf.
"""

from __future__ import annotations

import contextlib
import json
import math
import urllib.error
import urllib.parse
import urllib.request


class Inconclusive(Exception):  # noqa: N818 - a verdict, not a crash
    """The measurement could not be taken; the message says why."""


class PrometheusClient:
    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str) -> float:
        url = f"{self.base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:  # noqa: S310 - operator-configured URL
                body = json.loads(resp.read().decode())
        except urllib.error.HTTPError as e:
            detail = ""
            with contextlib.suppress(ValueError, OSError):
                detail = json.loads(e.read().decode()).get("error", "")
            raise Inconclusive(f"Prometheus answered {e.code}{': ' + detail if detail else ''}") from e
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise Inconclusive(f"Prometheus unreachable: {getattr(e, 'reason', e)}") from e
        except ValueError as e:
            raise Inconclusive(f"Prometheus answered something that is not JSON: {e}") from e
        if body.get("status") != "success":
            raise Inconclusive(f"query error: {body.get('error', 'unknown')}")
        data = body.get("data") or {}
        result = data.get("result")
        if data.get("resultType") == "scalar":
            result = [{"value": result}]
        if not result:
            raise Inconclusive("no data (no traffic in the window yet?)")
        if len(result) > 1:
            raise Inconclusive(f"the query returned {len(result)} series, not one number")
        try:
            value = float(result[0]["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise Inconclusive(f"unexpected result shape: {e}") from e
        if math.isnan(value) or math.isinf(value):
            raise Inconclusive(f"the query returned {value} (no requests in the window?)")
        return value
