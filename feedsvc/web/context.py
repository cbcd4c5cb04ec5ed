"""What every request handler needs, built once per app: settings, store, mail transport, tokens, templates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from urllib.parse import urlsplit

from jinja2 import Environment
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from feedsvc.config import Settings
from feedsvc.digests.archive import ARCHIVE_PATH
from feedsvc.i18n import Translate
from feedsvc.mail.transport import Transport
from feedsvc.templating import template_context
from feedsvc.tokens import Tokens
from feedsvc.web.feed_server import FeedFiles
from feedsvc.web.security import Csrf, OperatorOnly, page_headers

LONG_AGO = datetime.min.replace(tzinfo=UTC)


@dataclass
class WebContext:
    settings: Settings
    engine: Engine
    transport: Transport
    tokens: Tokens
    feeds: FeedFiles
    csrf: Csrf
    templates: Environment
    translate: Translate  # the "web" strings in the site's language
    operator_only: OperatorOnly
    # When this process next forgets expired rate-limit windows.
    prune_rate_limits_at: datetime = LONG_AGO

    @cached_property
    def page_headers(self) -> dict[str, str]:
        public = urlsplit(self.settings.web.base_url)
        return page_headers(f"{public.scheme}://{public.netloc}")

    def url(self, path: str) -> str:
        return f"{self.settings.web.base_url}{path}"

    def topics(self) -> frozenset[str]:
        """The site's topics: the tags that have a feed."""
        return frozenset(path.split("/")[2] for path in self.feeds.paths() if path.startswith("/tags/"))

    def page(self, template: str, **values: object) -> str:
        """The HTML of `web/{template}.html.j2`; its "back to the site" link goes to the site, wherever that is."""
        context = {
            **template_context(self.settings, "web"),
            "home_url": f"{self.settings.site.url}/",
            "archive_url": self.url(ARCHIVE_PATH) if self.settings.web.archive else "",
            **values,
        }
        return self.templates.get_template(f"web/{template}.html.j2").render(context)

    def render(self, template: str, *, status: int = 200, **values: object) -> HTMLResponse:
        return HTMLResponse(self.page(template, **values), status_code=status, headers=self.page_headers)

    def message(
        self, heading: str, *paragraphs: str, status: int = 200, link: dict[str, str] | None = None
    ) -> HTMLResponse:
        return self.render("message", status=status, heading=heading, paragraphs=paragraphs, link=link)


def web_context(request: Request) -> WebContext:
    return request.app.state.web


Handler = Callable[[Request], Awaitable[Response]]


def route(path: str, **handlers: Handler) -> Route:
    """One route for all the methods a path answers (`get=…, post=…`), so that a 405 for any other method
    lists every one of them in `Allow` (RFC 9110 15.5.6); HEAD goes where GET goes."""
    by_method = {method.upper(): handler for method, handler in handlers.items()}

    async def dispatch(request: Request) -> Response:
        handler = by_method["GET" if request.method == "HEAD" else request.method]
        request.scope["endpoint"] = handler  # the metrics count requests by handler
        return await handler(request)

    dispatch.__name__ = "_".join(handler.__name__ for handler in dict.fromkeys(by_method.values()))
    return Route(path, dispatch, methods=list(by_method))
