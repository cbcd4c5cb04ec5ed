"""Prometheus metrics: the counters every part of feedsvc increments, and the text served at /metrics.

Counters live in one registry of this process. Numbers that already live in the store (subscribers by status)
are read at scrape time, so they are right whichever process changed them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from feedsvc.vocabulary import MAIL_EVENT_KINDS, STATUSES

# The *_created series double every counter's output and nobody here reads them.
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REGISTRY = CollectorRegistry(auto_describe=True)

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
