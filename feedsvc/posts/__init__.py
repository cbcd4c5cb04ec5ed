"""Reading the post collection: files in the posts folder -> `Post`s, with the `Problem`s found on the way."""

from __future__ import annotations

from feedsvc.posts.collection import Collection, Scan, is_ignored_name
from feedsvc.posts.lint import lint
from feedsvc.posts.model import Post, Problem, is_published, tag_slug

__all__ = ["Collection", "Post", "Problem", "Scan", "is_ignored_name", "is_published", "lint", "tag_slug"]
