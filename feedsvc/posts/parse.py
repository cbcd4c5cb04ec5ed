"""One post file to a `Post` (or the error that keeps it out), with the warnings worth telling its author."""

from __future__ import annotations

from pathlib import Path

from feedsvc.posts.fields import Site
from feedsvc.posts.model import Post, Problem, failure
from feedsvc.posts.readers import Convention, split
from feedsvc.posts.source import SourceError, decode


def read_post(
    path: Path, data: bytes, mtime_ns: int, convention: Convention
) -> tuple[Post | None, list[Problem]]:
    """Parse one file. Errors come back as a single error Problem and no post: whatever goes wrong with one
    file (the folder is untrusted input) must not stop the others."""
    site: Site = convention.site
    warnings: list[Problem] = []
    try:
        post = convention.build(
            path,
            split(decode(data)),
            (len(data), mtime_ns),
            lambda line, message: warnings.append(site.problem(path, line, message, "warning")),
        )
    except SourceError as exc:
        return None, [site.problem(path, exc.line, exc.message)]
    except Exception as exc:  # a file that breaks the reader is that file's problem alone
        return None, [site.problem(path, None, f"cannot be read as a post: {failure(exc)}")]
    return post, warnings
