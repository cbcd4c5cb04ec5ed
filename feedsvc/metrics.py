"""Prometheus metrics: the counters every part of feedsvc increments, and the text served at /metrics.

Counters live in one registry of this process. Numbers that already live in the store (subscribers by status)
are read at scrape time, so they are right whichever process changed them. The feed requests answered are counted
in a plain dict by the event loop that answers them (`LoopCounts`) and added to their counter whenever the registry
is collected: prometheus_client's `inc` (a lock, a labelled child looked up) was a tenth of the instructions of a
feed answered by the HTTP server's fast path.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from feedsvc.vocabulary import MAIL_EVENT_KINDS, STATUSES

# The *_created series double every counter's output and nobody here reads them.
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REGISTRY = CollectorRegistry(auto_describe=True)


class LoopCounts:
    """Increments of a labelled counter made by one thread (an event loop's), kept as plain counts in `counts`
    (key -> number since the start) and added to the counter at each collection of REGISTRY, before the counter
    is read: every scrape and `REGISTRY.get_sample_value` sees them all. Only the owning thread writes `counts`
    (a dict item set, atomic under the GIL); a collection in any thread reads a copy and adds what it has not added
    yet, so no increment is lost or counted twice."""

    def __init__(self, counter: Counter, labels: Callable[[Hashable], tuple[str, ...]]) -> None:
        self.counts: dict[Hashable, int] = {}
        self._counter = counter
        self._labels = labels
        self._added: dict[Hashable, int] = {}
        _LOOP_COUNTS.add(self)

    def add_to_counter(self) -> None:
        with _ADDING:
            for key, number in self.counts.copy().items():
                added = self._added.get(key, 0)
                if number != added:
                    self._counter.labels(*self._labels(key)).inc(number - added)
                    self._added[key] = number

    def __del__(self) -> None:
        self.add_to_counter()  # a route that goes away (an app of the tests) loses none of its counts


_LOOP_COUNTS: weakref.WeakSet[LoopCounts] = weakref.WeakSet()
_ADDING = threading.RLock()  # one collection adds at a time (`__del__` may run inside one: reentrant)


class _AddLoopCounts:
    """Registered first, so collected first: adds every LoopCounts to its counter before the counters are read."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with _ADDING:
            for counts in list(_LOOP_COUNTS):
                counts.add_to_counter()
        return iter(())


REGISTRY.register(_AddLoopCounts())

FEED_BUILDS = Counter(
    "feedsvc_feed_builds", "Feed builds, by outcome (ok, failed).", ["outcome"], registry=REGISTRY
)
HTTP_REQUESTS = Counter(
    "feedsvc_http_requests", "HTTP requests answered, by method, route and status code.",
    ["method", "route", "status"], registry=REGISTRY,
)
DELIVERIES = Counter(
    "feedsvc_deliveries", "Digest mail delivery attempts, by outcome (sent, retry, failed, bounced).",
    ["outcome"], registry=REGISTRY,
)
MAIL_EVENTS = Counter(
    "feedsvc_mail_events", "Bounces, complaints and unsubscribes reported by mail systems and recorded by this process, "
    "by kind and source.", ["kind", "source"], registry=REGISTRY,
)
CONFIRMATION_MAILS = Counter(
    "feedsvc_confirmation_mails", "Confirmation mails, by outcome (sent, failed, rate_limited).",
    ["outcome"], registry=REGISTRY,
)


class _Scrape:
    """The process registry plus the gauges read from the store for this scrape."""

    def __init__(
        self,
        subscribers_by_status: Mapping[str, int],
        mail_events_by_kind: Mapping[str, int],
        fediverse_followers: int | None = None,
    ) -> None:
        self._subscribers = subscribers_by_status
        self._mail_events = mail_events_by_kind
        self._fediverse_followers = fediverse_followers

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        gauge = GaugeMetricFamily("feedsvc_subscribers", "Subscribers, by status.", labels=["status"])
        for status in STATUSES:
            gauge.add_metric([status], self._subscribers.get(status, 0))
        yield gauge
        events = GaugeMetricFamily(
            "feedsvc_mail_events_stored", "Bounces, complaints and unsubscribes on record (all processes), by kind.",
            labels=["kind"],
        )
        for kind in MAIL_EVENT_KINDS:
            events.add_metric([kind], self._mail_events.get(kind, 0))
        yield events
        if self._fediverse_followers is not None:
            yield GaugeMetricFamily(
                "feedsvc_fediverse_followers", "Fediverse accounts following the blog.", value=self._fediverse_followers
            )


def exposition(
    subscribers_by_status: Mapping[str, int],
    mail_events_by_kind: Mapping[str, int] | None = None,
    fediverse_followers: int | None = None,
) -> bytes:
    """The Prometheus text format of every metric, with the subscriber, mail event and follower counts given."""
    return generate_latest(_Scrape(subscribers_by_status, mail_events_by_kind or {}, fediverse_followers))
