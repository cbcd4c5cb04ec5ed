"""The rebuild as one pipeline: the build, then every output in `OUTPUTS`, in order.

The build scans the posts and writes the feed files (in the service in a child process, see `build_process`;
in `feedsvc build` in-process). Each output then gets the `Rebuild` so far and does its part. An output reacts
either to feed files that changed (`FEEDS`: the WebSub ping) or to the published posts (`POSTS`: the digests,
which announce new posts and create the editions due; the fediverse, which federates what was announced). Who
runs what:

- the service (`scheduler.Jobs.rebuild`): the build and every output;
- `feedsvc build`: the build and the outputs reacting to feeds;
- `feedsvc digest send`: a scan and the outputs reacting to posts, then it sends the mail queue.

Each step stands alone: an output that raises is reported (the service logs `rebuild.failed step=<name>` and
plans a retry with back-off) and the outputs after it still run. An output that only talks to the outside world
and that nothing after it waits for (WebSub, with its own retries) is `detached`: the service starts it in the
background, the CLI waits for it.

A new output is a module in this package with one object satisfying `Output`, and one entry in `OUTPUTS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from feedsvc.config import Settings
from feedsvc.logging import fields
from feedsvc.outputs.digests import DigestsOutput
from feedsvc.outputs.fediverse import FediverseOutput
from feedsvc.outputs.websub import WebSubOutput
from feedsvc.posts import Scan

if TYPE_CHECKING:  # `feedsvc build` has no store: it does not load one
    from sqlalchemy import Engine

    from feedsvc.digests import EditionSummary

log = logging.getLogger(__name__)

Reacts = Literal["feeds", "posts"]
FEEDS: frozenset[Reacts] = frozenset({"feeds"})
POSTS: frozenset[Reacts] = frozenset({"posts"})
EVERYTHING: frozenset[Reacts] = FEEDS | POSTS


@dataclass
class Rebuild:
    """What one rebuild has found and done so far; each output reads it and may add its result."""

    settings: Settings
    engine: Engine | None  # None where there is no store (`feedsvc build`): no output reacting to posts runs
    now: datetime
    scan: Scan
    written: tuple[Path, ...] = ()  # feed files written or removed by the build
    include_archive: bool = False  # `digest send --include-archive`
    dry_run: bool = False  # `digest send --dry-run`: store nothing, send nothing
    editions: list[EditionSummary] = field(default_factory=list)  # created by the digests output


class Output(Protocol):
    name: str  # in logs (`rebuild.failed step=<name>`) and to map an output to the loop it wakes
    reacts_to: Reacts
    detached: bool

    def wanted(self, settings: Settings) -> bool:
        """Whether this site uses the output at all (WebSub only with a hub configured)."""
        ...

    async def run(self, rebuild: Rebuild) -> int:
        """Do the output's part; how many things it queued or sent (editions, pings), 0 for none."""
        ...


# Digests first: the fediverse output federates what the digests output has just announced.
OUTPUTS: tuple[Output, ...] = (WebSubOutput(), DigestsOutput(), FediverseOutput())


@dataclass(frozen=True, slots=True)
class Failed:
    output: str
    exception: Exception

    @property
    def error(self) -> str:
        return f"{type(self.exception).__name__}: {self.exception}"[:500]


@dataclass
class Outcome:
    done: dict[str, int] = field(default_factory=dict)  # output name -> what it returned (not the detached ones)
    failed: list[Failed] = field(default_factory=list)


async def run_outputs(
    rebuild: Rebuild,
    reacting_to: frozenset[Reacts],
    *,
    detach: Callable[[Coroutine[Any, Any, Any]], None] | None = None,
    outputs: tuple[Output, ...] = OUTPUTS,
) -> Outcome:
    """Run the wanted outputs that react to `reacting_to`, in order, each on its own: a failure is recorded and
    the next one runs. With `detach`, detached outputs are handed to it instead of awaited."""
    outcome = Outcome()
    for output in outputs:
        if output.reacts_to not in reacting_to or not output.wanted(rebuild.settings):
            continue
        if output.reacts_to == "posts" and rebuild.engine is None:
            continue
        if output.detached and detach is not None:
            detach(_isolated(output, rebuild))
            continue
        try:
            outcome.done[output.name] = await output.run(rebuild)
        except Exception as exc:  # the store unreachable, a bug: reported, the next output runs
            outcome.failed.append(Failed(output.name, exc))
    return outcome


async def _isolated(output: Output, rebuild: Rebuild) -> None:
    """A detached output: what it raises is one log line, as nothing waits for it."""
    try:
        await output.run(rebuild)
    except Exception:
        log.exception("output.failed", extra=fields(output=output.name))
