"""Reading the post collection: files in the posts folder -> `Post`s, with the `Problem`s found on the way.

`feedsvc check`'s `lint` is in `feedsvc.posts.lint`, not here: it renders posts, and the renderers' modules are no
part of the start-up of a process that reads the posts without rendering them (a `digest send` with nothing new).
"""

from __future__ import annotations

from feedsvc.posts.collection import Collection, Scan, is_ignored_name
from feedsvc.posts.model import Post, Problem, is_published, replaced_places, tag_slug

__all__ = [
    "Collection",
    "Post",
    "Problem",
    "Scan",
    "is_ignored_name",
    "is_published",
    "replaced_places",
    "tag_slug",
]
