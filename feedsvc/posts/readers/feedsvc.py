"""feedsvc's own posts folder: any file with a post extension is a post; the URL comes from posts.url_pattern."""

from __future__ import annotations

import uuid
from pathlib import Path

from feedsvc.posts.fields import (
    MARKUPS,
    author_name,
    date_field,
    describe,
    file_date,
    flag,
    slug_field,
    tag_names,
    text,
)
from feedsvc.posts.markup import Markup, absolute_url
from feedsvc.posts.model import Post
from feedsvc.posts.readers.base import Convention, Warn, check_markdown
from feedsvc.posts.source import Source, SourceError, plain_body, title_line


class Feedsvc(Convention):
    name = "feedsvc"

    def build(self, path: Path, source: Source, version: tuple[int, int], warn: Warn) -> Post:
        site = self.site
        meta = source.meta or {}
        markup: Markup = "markdown" if source.meta is not None or path.suffix.lower() != ".txt" else "text"
        if "markup" in meta:
            if meta["markup"] not in MARKUPS:
                raise SourceError(
                    f"unknown markup {describe(meta['markup'])} (use 'markdown' or 'text')",
                    source.key_line("markup"),
                )
            markup = MARKUPS[meta["markup"]]

        title = text(meta, source, "title")
        if source.meta is None:
            title = title_line(source.body)[0]
        elif not title:
            title = path.stem.replace("-", " ").replace("_", " ").strip() or path.name
            warn(source.meta_line, f"no title in the front matter: using {title!r} from the file name")

        when = date_field(meta, source, "date", site.tz)
        if when is None:
            when = file_date(version[1], site.tz)
            warn(None, f"no date: using the file's modification time {when.isoformat()}")
        updated = date_field(meta, source, "updated", site.tz)

        slug = slug_field(meta, source, path)
        url = site.post_url(slug, when)
        post_id = (
            text(meta, source, "id", numbers=True)
            or f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{site.url}/{slug}')}"
        )
        summary = text(meta, source, "summary") or text(meta, source, "description")
        if markup == "markdown":
            check_markdown(source, summary, source.body)
        image = text(meta, source, "image") or text(meta, source, "cover")
        return Post(
            id=post_id,
            slug=slug,
            title=title,
            date=when,
            updated=updated,
            url=url,
            tags=tag_names(meta, source, site.max_tags, warn),
            author=author_name(meta, source) or site.author,
            image=absolute_url(image, url, site.asset_urls) if image else None,
            draft=flag(meta, source, "draft"),
            source=path,
            markup=markup,
            summary=summary,
            asset_urls=site.asset_urls,
            version=version,
        )

    def body(self, path: Path, source: Source, warn: Warn) -> str:
        return plain_body(source)
