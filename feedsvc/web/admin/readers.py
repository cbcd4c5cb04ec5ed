"""Feed readers: the page, and the observer the feed server calls for each feed request."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from sqlalchemy import Engine
from starlette.responses import Response
from starlette.routing import Route

from feedsvc import feed_readers
from feedsvc.web.admin.common import PREFIX, Admin, admin_page, now

# Feed reads are handed to the tally in batches: at most this many seconds (or the tally's own flush interval,
# if shorter) after the first of a batch, or at this many distinct requesters.
BATCH_SECONDS = 1.0
BATCH_SIZE = 1_000
DAY = 86_400.0  # seconds; POSIX time has no leap seconds, so UTC days begin at its multiples


def feed_request_observer(engine: Engine, key: str) -> FeedReads:
    """For FeedRoute (its `read`): tallies each feed read; the tally is written in a worker thread once a minute,
    and at the app's shutdown (`close`)."""
    return FeedReads(feed_readers.Tally(engine, key))


class FeedReads:
    """Feed reads on their way to the tally, in batches.

    A read costs its request a dict item: (path, client, User-Agent) -> the time of its last read. The batch goes
    to the tally when a read comes `BATCH_SECONDS` after the batch's first (or the tally's flush interval, if
    shorter), at `BATCH_SIZE` distinct keys, or at UTC midnight; in the order of each key's last read and with
    that read's own time, so its UTC day and a hosted reader's latest count are those of reads handed over one
    by one. A feed polled again and again by the same clients is one tally entry per client and batch: the
    tally's work for every read was a fifth of the instructions of a 304 answered by the HTTP server's fast path.
    Reads of the last batch wait for the next read, as the tally waits for one to be written."""

    def __init__(self, tally: feed_readers.Tally) -> None:
        self.tally = tally
        self._batch: dict[tuple[str, str, bytes], float] = {}
        self._hand_over_at = 0.0  # time.time() from which the next read hands the batch over
        self._day_ends = 0.0  # time.time() of the next UTC midnight
        self._writing: set[asyncio.Future[None]] = set()  # referenced until done

    def read(self, path: str, client: str, user_agent: bytes) -> None:
        moment = time.time()
        batch = self._batch
        if moment >= self._day_ends:  # a batch holds one UTC day: a client's read of the day before stays counted
            self.hand_over()
            self._day_ends = (moment // DAY + 1) * DAY
        batch[(path, client, user_agent)] = moment
        if moment >= self._hand_over_at or len(batch) >= BATCH_SIZE:
            self._hand_over_at = moment + min(BATCH_SECONDS, feed_readers.FLUSH_SECONDS)
            self.hand_over()

    async def close(self) -> None:
        """Write what was read so far: the batch and what the tally holds (a restart would lose up to a minute)."""
        self.hand_over()
        if self._writing:
            await asyncio.wait(set(self._writing))
        await asyncio.to_thread(self.tally.flush)

    def hand_over(self) -> None:
        """Give the batch to the tally, and have the tally written if it is due (from the event loop)."""
        reads = sorted(self._batch.items(), key=lambda item: item[1])
        self._batch.clear()
        due = False
        for (path, client, user_agent), moment in reads:
            when = datetime.fromtimestamp(moment, UTC)
            due = self.tally.observe(path, client, user_agent.decode("latin-1")[:512], when) or due
        if due:
            future = asyncio.get_running_loop().run_in_executor(None, self.tally.flush)
            self._writing.add(future)
            future.add_done_callback(self._writing.discard)


@admin_page
async def readers_page(admin: Admin) -> Response:
    audiences = await admin.run(feed_readers.audiences, admin.web.engine, now())
    return admin.render(
        "readers", audiences=audiences, window_days=feed_readers.WINDOW_DAYS,
        flush_minutes=int(feed_readers.FLUSH_SECONDS // 60),
    )


routes = [Route(f"{PREFIX}/readers", readers_page, methods=["GET"])]
