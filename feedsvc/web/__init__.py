"""The HTTP side of feedsvc: feeds, subscribe/confirm/unsubscribe/preferences pages, admin API, health, metrics."""

from feedsvc.web.app import create_app

__all__ = ["create_app"]
