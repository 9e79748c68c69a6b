"""Metric providers: the one seam between analysis and a metrics backend.

A provider answers "what is this query's value now?" with a value, "no data",
or an error, and never raises: an analysis tick must always produce verdicts,
and a backend that is down must show up as Inconclusive with a reason, not as
a crashed handler or a hang. Adding a backend is one class here (or in its own
module) and one entry in ``PROVIDERS``.

Prometheus is reached through ``prometheus-api-client``, with the library's
retries turned off (its default retries with backoff for seconds on every
error; the operator's own timer is the retry) and a timeout on every request,
passed to Prometheus too so it stops evaluating a query nobody waits for.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS: Final = 5.0
_MAX_ERROR = 300  # characters of an error kept for status
_HTTP_ERROR = re.compile(r"^HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One query's answer: a value, no data (both None), or an error.

    ``unreachable`` marks errors where the backend did not answer at all
    (connection refused, timeout, gateway error): retrying other queries in
    the same tick would only wait again.
    """

    value: float | None = None
    error: str | None = None
    unreachable: bool = False
    series: Mapping[str, float] | None = None
    """For ``query_by``: each series' value keyed by one label's value."""
    history: Mapping[str, tuple[tuple[float, float], ...]] | None = None
    """For ``query_by`` of a range (a subquery): each series' (time, value) points, by label."""

    @property
    def ok(self) -> bool:
        """True when the backend answered the query (possibly with no data)."""
        return self.error is None

    @property
    def no_data(self) -> bool:
        """True when the backend answered with nothing to measure."""
        return self.error is None and (self.value is None or math.isnan(self.value))

    @classmethod
    def failed(cls, error: str, *, unreachable: bool = False) -> QueryResult:
        """An error result, its message cut to a length status can carry."""
        if len(error) > _MAX_ERROR:
            error = error[: _MAX_ERROR - 1] + "…"
        return cls(error=error, unreachable=unreachable)


class MetricProvider(Protocol):
    """What analysis needs from a metrics backend."""

    def query(self, promql: str) -> QueryResult:
        """The query's single value now; never raises."""
        ...

    def query_by(self, promql: str, label: str) -> QueryResult:
        """Every series' value now, keyed by ``label`` (e.g. histogram buckets by ``le``)."""
        ...

    def is_online(self) -> bool:
        """True when the backend answers; never raises, never hangs past the timeout."""
        ...


class ProviderFactory(Protocol):
    """How the registry builds a provider from the operator's settings."""

    def __call__(self, url: str, timeout_seconds: float = ...) -> MetricProvider: ...


def _single_value(result: Any) -> QueryResult:
    """Reduce a Prometheus ``data.result`` to one value, or say why it cannot be."""
    if not isinstance(result, list):
        return QueryResult.failed(f"unexpected answer from Prometheus: {str(result)[:80]}")
    if len(result) == 2 and not isinstance(result[0], dict):
        # A scalar (or string) result: [timestamp, "value"].
        try:
            return QueryResult(value=float(result[1]))
        except (TypeError, ValueError):
            return QueryResult.failed(f"query returned a string, not a number: {result[1]!r}")
    if not result:
        return QueryResult()  # empty vector: no data
    if len(result) > 1:
        labels = ", ".join(str(s.get("metric", {})) for s in result[:3] if isinstance(s, dict))
        return QueryResult.failed(
            f"query returned {len(result)} series, expected one: aggregate it"
            f" (e.g. sum(...), max(...) or histogram_quantile over sum by (le)); got {labels}"
        )
    sample = result[0]
    if not isinstance(sample, dict) or "value" not in sample:
        if isinstance(sample, dict) and "values" in sample:
            return QueryResult.failed(
                "query returned a range vector: wrap it in a function such as"
                " rate(...) or avg_over_time(...)"
            )
        return QueryResult.failed(f"unexpected sample from Prometheus: {str(sample)[:80]}")
    try:
        return QueryResult(value=float(sample["value"][1]))
    except (TypeError, ValueError, IndexError) as err:
        return QueryResult.failed(f"unreadable sample value {sample['value']!r}: {err}")


def _by_label(result: Any, label: str) -> QueryResult:
    """A Prometheus instant vector as {value of ``label``: value}; empty is no data.

    A range vector (a subquery's answer) comes back as ``history``: each
    series' points, in time order.
    """
    if not isinstance(result, list):
        return QueryResult.failed(f"unexpected answer from Prometheus: {str(result)[:80]}")
    if result and all(isinstance(s, dict) and "values" in s for s in result):
        return _history_by_label(result, label)
    series: dict[str, float] = {}
    for sample in result:
        try:
            key = str(sample["metric"][label])
            series[key] = float(sample["value"][1])
        except (KeyError, TypeError, ValueError, IndexError):
            return QueryResult.failed(
                f"query must return an instant vector with label {label!r}, got {str(sample)[:80]}"
            )
    return QueryResult(series=series) if series else QueryResult()


def _history_by_label(result: list[Any], label: str) -> QueryResult:
    """A Prometheus range vector as {value of ``label``: ((time, value), ...)}."""
    history: dict[str, tuple[tuple[float, float], ...]] = {}
    for sample in result:
        try:
            key = str(sample["metric"][label])
            points = tuple(sorted((float(t), float(v)) for t, v in sample["values"]))
        except (KeyError, TypeError, ValueError):
            return QueryResult.failed(
                f"query must return series with label {label!r}, got {str(sample)[:80]}"
            )
        if key in history:
            return QueryResult.failed(f"two series with {label}={key!r}: aggregate by {label}")
        history[key] = points
    return QueryResult(history=history)


def _http_error(err: PrometheusApiClientException) -> QueryResult:
    """Recover the status code and Prometheus' own error text from the library's exception."""
    match = _HTTP_ERROR.match(str(err))
    if not match:
        return QueryResult.failed(f"Prometheus error: {err}")
    status = int(match.group(1))
    body = match.group(2)
    try:
        raw = ast.literal_eval(body)  # the library formats the body as repr(bytes)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    except (ValueError, SyntaxError):
        text = body
    try:
        payload = json.loads(text)
        detail = f"{payload.get('errorType', 'error')}: {payload.get('error', '')}"
        is_prometheus = True
    except (ValueError, AttributeError):
        detail, is_prometheus = text.strip(), False
    # A gateway or a starting Prometheus answers 502/503/504 without Prometheus' JSON.
    unreachable = status in (502, 503, 504) and not is_prometheus
    return QueryResult.failed(
        f"Prometheus answered HTTP {status}: {detail}", unreachable=unreachable
    )


class PrometheusProvider:
    """Instant queries against one Prometheus (or anything speaking its HTTP API)."""

    name: Final = "prometheus"

    def __init__(
        self,
        url: str,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        # total=0: no retry of any kind; the analysis timer is the retry.
        no_retry = Retry(total=0, connect=0, read=0, status=0, redirect=0, raise_on_status=False)
        self._client = PrometheusConnect(
            url=self.url,
            headers=dict(headers) if headers else None,
            retry=no_retry,
            timeout=timeout_seconds,
        )
        # Prometheus takes a float number of seconds for its evaluation timeout.
        self._params = {"timeout": f"{timeout_seconds:g}"}

    def query(self, promql: str) -> QueryResult:
        """Run an instant query; exactly one sample is a value, none is no data."""
        return self._ask(promql, _single_value)

    def query_by(self, promql: str, label: str) -> QueryResult:
        """Run an instant query; every series' value keyed by ``label``."""
        return self._ask(promql, lambda result: _by_label(result, label))

    def _ask(self, promql: str, read: Callable[[Any], QueryResult]) -> QueryResult:
        try:
            result = self._client.custom_query(promql, params=dict(self._params))
        except PrometheusApiClientException as err:
            answer = _http_error(err)
        except requests.exceptions.JSONDecodeError as err:
            answer = QueryResult.failed(f"not a Prometheus API answer at {self.url}: {err}")
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
            answer = QueryResult.failed(
                f"Prometheus at {self.url} unreachable: {_root_cause(err)}", unreachable=True
            )
        except requests.exceptions.RequestException as err:
            answer = QueryResult.failed(
                f"request to Prometheus at {self.url} failed: {err}", unreachable=True
            )
        except Exception as err:  # a provider never raises into a tick
            log.exception("unexpected error querying %s", self.url)
            answer = QueryResult.failed(f"unexpected error querying Prometheus: {err!r}")
        else:
            answer = read(result)
        if answer.error:
            log.debug("query %r on %s: %s", promql, self.url, answer.error)
        return answer

    def is_online(self) -> bool:
        """True when Prometheus answers its root page within the timeout."""
        try:
            return bool(self._client.check_prometheus_connection())
        except Exception as err:  # unreachable, timeout, anything: offline
            log.debug("Prometheus at %s offline: %s", self.url, err)
            return False

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._client.close()


def _root_cause(err: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error chain, short enough for status."""
    text = str(err)
    for marker in ("Connection refused", "timed out", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return text


PROVIDERS: Final[Mapping[str, ProviderFactory]] = {
    "prometheus": PrometheusProvider,
}
"""Metric providers by name, one entry per provider."""


def make_provider(
    name: str, url: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> MetricProvider:
    """Build the provider registered as ``name``; ValueError naming the known ones."""
    try:
        factory = PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown metric provider {name!r}; known: {known}") from None
    return factory(url, timeout_seconds)
