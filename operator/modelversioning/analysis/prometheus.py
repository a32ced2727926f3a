"""A minimal Prometheus HTTP API client: one instant query, one number, or Inconclusive.

Everything that is not a clean single number is *inconclusive*, never a pass: Prometheus unreachable,
a timeout, a connection dropped mid-answer, an HTTP or PromQL error, an answer that is not a JSON
object, an empty result (no traffic yet), several series, NaN or Inf.
"""

from __future__ import annotations

import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class Inconclusive(Exception):  # noqa: N818 - a verdict, not a crash
    """The measurement could not be taken; the message says why."""


def _error_detail(raw: bytes) -> str:
    """Prometheus's `error` of an error answer; '' when the body is not a JSON object saying one."""
    try:
        body = json.loads(raw.decode())
    except ValueError:
        return ""
    return str(body.get("error") or "")[:300] if isinstance(body, dict) else ""


class PrometheusClient:
    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _get(self, promql: str) -> Any:
        url = f"{self.base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:  # noqa: S310 - operator-configured URL
                raw = resp.read()
        except urllib.error.HTTPError as e:
            try:
                detail = _error_detail(e.read())
            except (OSError, http.client.HTTPException):
                detail = ""
            raise Inconclusive(f"Prometheus answered {e.code}{': ' + detail if detail else ''}") from e
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            # refused, DNS, TLS, timeout (all OSError), a connection cut mid-answer / a garbled status
            # line (http.client's IncompleteRead, RemoteDisconnected, BadStatusLine ...), a URL urllib
            # cannot open (ValueError)
            reason = getattr(e, "reason", None) or e
            raise Inconclusive(f"Prometheus unreachable: {type(e).__name__}: {reason}") from e
        try:
            return json.loads(raw.decode())
        except ValueError as e:  # UnicodeDecodeError is a ValueError too
            raise Inconclusive(f"Prometheus answered something that is not JSON: {e}") from e

    def query(self, promql: str) -> float:
        body = self._get(promql)
        if not isinstance(body, dict):
            raise Inconclusive(f"Prometheus answered JSON that is not an object: {json.dumps(body)[:100]}")
        if body.get("status") != "success":
            raise Inconclusive(f"query error: {str(body.get('error') or 'unknown')[:300]}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise Inconclusive("unexpected answer: no data object")
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            result = [{"value": result}]
        elif kind != "vector":
            raise Inconclusive(f"the query returned a {kind}, not an instant vector or a scalar")
        if not result:
            raise Inconclusive("no data (no traffic in the window yet?)")
        if not isinstance(result, list):
            raise Inconclusive(f"unexpected result shape: {type(result).__name__}")
        if len(result) > 1:
            raise Inconclusive(f"the query returned {len(result)} series, not one number")
        try:
            value = float(result[0]["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise Inconclusive(f"unexpected result shape: {type(e).__name__}: {e}") from e
        if math.isnan(value) or math.isinf(value):
            raise Inconclusive(f"the query returned {value} (no requests in the window?)")
        return value
