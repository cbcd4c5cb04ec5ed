"""The subscriber list as CSV: import (the operator's file or the admin API's body) and export.

An export imported elsewhere restores the list: statuses, cadences, topics, the dates and each consent record
as they were. An import never holds the store for long: the file is read and checked whole first (a fault in
its structure refuses it whole, before anything is written), then its rows are written in transactions of
about BATCH_SECONDS each, with a pause between them in which the service's own writes (subscribes, the leader's
lease) go through. A crashed import is resumed by running it again: the rows already written are found as they
are and skipped, nothing is added twice.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy import Connection, Engine

from feedsvc.store import deliveries as delivery_store
from feedsvc.store import subscribers as store
from feedsvc.store.subscribers import Subscriber
from feedsvc.subscriptions.addresses import InvalidInput, SubscriptionRequest, subscription_request
from feedsvc.subscriptions.lifecycle import (
    SUPPRESSED,
    AddOutcome,
    Consent,
    add_existing,
    added_row,
    consent_values,
    new_row,
)
from feedsvc.vocabulary import STATUSES

EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "frequency",
    "tags",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "status_reason",
    "consent_at",
    "consent_ip",
    "consent_user_agent",
    "consent_source",
)
TIME_COLUMNS = ("created_at", "confirmed_at", "unsubscribed_at", "consent_at")
# How long one import transaction may hold the store, and the pause after it: SQLite has one writer at a time,
# and a subscribe waiting for it retries every few tens of milliseconds.
BATCH_SECONDS = 0.05
PAUSE_SECONDS = 0.03
CHUNK_ROWS = 100  # rows per statement

# A cell a spreadsheet would run as a formula (CSV injection) starts with one of these...
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# ...unless it is a number or a plain address, which a spreadsheet shows as they are.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_PLAIN_ADDRESS = re.compile(r"[\w.+-]+@[\w.-]+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _runs_in_a_spreadsheet(value: str) -> bool:
    """Whether the export writes this cell with a `'` before it. A cell that already starts with `'` before
    such a cell gets one more, so that the import, which takes one off, gives back exactly what was there."""
    if value.startswith("'"):
        return _runs_in_a_spreadsheet(value[1:])
    return value.startswith(_FORMULA_STARTS) and not _NUMBER.fullmatch(value) and not _PLAIN_ADDRESS.fullmatch(value)


def spreadsheet_safe(value: str) -> str:
    return "'" + value if _runs_in_a_spreadsheet(value) else value


def undo_spreadsheet_safe(value: str) -> str:
    return value[1:] if value.startswith("'") and _runs_in_a_spreadsheet(value[1:]) else value


@dataclass
class ImportReport:
    """What an import did, row by row counted: `imported` new addresses (of which `pending` await their
    confirmation mail), `updated` ones already on the list (activated, or suppressed as the file says),
    `skipped` ones already there as they are or kept as suppressions, and the `refused` rows by line."""

    imported: int = 0
    pending: int = 0
    updated: int = 0
    skipped: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)

    def summary(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "pending": self.pending,
            "updated": self.updated,
            "skipped": self.skipped,
            "refused": [{"line": line, "reason": reason} for line, reason in self.refused],
        }


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (no header, a header that is not CSV, no email column, a column
    named twice, not UTF-8); nothing of it was written."""


@dataclass(frozen=True, slots=True)
class ImportRow:
    request: SubscriptionRequest
    status: str  # "" when the file does not say
    consent: Consent | None  # the row's own consent record, when the file has one
    history: dict[str, Any]  # created_at, confirmed_at, unsubscribed_at, status_reason as the file gives them


def decode_csv(data: bytes) -> str:
    """The text of an uploaded CSV (UTF-8, with or without a byte order mark)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = len(_LINE_BREAK.findall(data[: exc.start].decode("utf-8-sig", errors="replace"))) + 1
        raise ImportFileError(
            f"line {line}: the file is not UTF-8 text (byte 0x{data[exc.start]:02x}; save it as CSV UTF-8); "
            "nothing was imported"
        ) from None


@dataclass(frozen=True, slots=True)
class Record:
    line: int  # where it starts
    fields: list[str]
    fault: str = ""  # why it cannot be read (its fields are then empty)


def _records(reader: Any) -> Iterator[Record]:
    """The file's records; one that cannot be read says why, and the reader goes on at the next line."""
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "end of data" in str(exc):
                # The quote swallowed every line after it: none of them can be read as rows.
                yield Record(start, [], "a quoted field opened on this line is never closed: nothing from this "
                                        "line to the end of the file was imported")
                return
            yield Record(start, [], f"unreadable row: {exc}")
        else:
            yield Record(start, fields)
        start = reader.line_num + 1


def _columns(header: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for position, raw in enumerate(header):
        name = raw.strip().lower()
        if name not in EXPORT_COLUMNS:
            continue  # not read: a spreadsheet's own columns may be anything
        if name in columns:
            raise ImportFileError(
                f"line 1: the header row names the column {name!r} twice (columns {columns[name] + 1} and "
                f"{position + 1}); nothing was imported"
            )
        columns[name] = position
    if "email" not in columns:
        raise ImportFileError(f"the header row has no 'email' column (found: {', '.join(header)})")
    return columns


def _time(column: str, raw: str) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(column, "is not a date and time (ISO 8601, as the export writes it)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _import_row(row: dict[str, str], known_tags: frozenset[str] | None) -> ImportRow:
    request = subscription_request(row["email"], row.get("name"), row.get("frequency"), row.get("tags"))
    unknown = sorted(set(request.tags) - known_tags) if known_tags is not None else []
    if unknown:
        offered = ", ".join(sorted(known_tags or ())) or "none"
        raise InvalidInput("tags", f"{', '.join(unknown)}: not a topic of this site (its topics: {offered})")
    status = row.get("status", "").strip().lower()
    if status and status not in STATUSES:
        raise InvalidInput("status", f"must be one of {', '.join(STATUSES)}")
    times = {column: _time(column, row.get(column, "").strip()) for column in TIME_COLUMNS}
    consent_at = times.pop("consent_at")
    consent = None
    if consent_at is not None:
        consent = Consent(
            at=consent_at,
            source=row.get("consent_source", ""),
            ip=row.get("consent_ip", ""),
            user_agent=row.get("consent_user_agent", ""),
        )
    history: dict[str, Any] = {column: value for column, value in times.items() if value is not None}
    if row.get("status_reason"):
        history["status_reason"] = row["status_reason"]
    return ImportRow(request, status, consent, history)


def read_csv(
    data: bytes, known_tags: frozenset[str] | None = None
) -> tuple[list[ImportRow], list[tuple[int, str]]]:
    """The rows of a CSV whose header names at least `email` (also: name, frequency, tags, status and the
    other columns of the export), and the refused ones by line (a bad field, an address given twice; with
    `known_tags`, a topic not among them)."""
    records = _records(csv.reader(io.StringIO(decode_csv(data), newline=""), strict=True))
    first = next(records, None)
    if first is not None and first.fault:
        raise ImportFileError(f"line 1: the header row cannot be read: {first.fault}")
    if first is None or not any(cell.strip() for cell in first.fields):
        raise ImportFileError("the file is empty: a header row naming an 'email' column is required")
    header = first.fields
    columns = _columns(header)
    rows: list[ImportRow] = []
    refused: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for record in records:
        line, fields = record.line, record.fields
        if record.fault:
            refused.append((line, record.fault))
            continue
        if not any(fields):
            continue  # a blank line
        if len(fields) > len(header):
            refused.append((line, "more fields than the header row names"))
            continue
        cells = {name: undo_spreadsheet_safe(fields[position]) if position < len(fields) else ""
                 for name, position in columns.items()}
        try:
            row = _import_row(cells, known_tags)
        except InvalidInput as exc:
            refused.append((line, str(exc)))
            continue
        key = row.request.address.key
        if key in seen:
            refused.append((line, f"email: {row.request.address.email} is already on line {seen[key]}"))
            continue
        seen[key] = line
        rows.append(row)
    return rows, refused


Progress = Callable[[int, int], None]  # (rows written, rows in all), after each transaction


def import_csv(
    engine: Engine,
    data: bytes,
    *,
    confirmed: bool,
    consent: Consent,
    progress: Progress | None = None,
    known_tags: frozenset[str] | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Import a CSV (see `read_csv`). Each refused row is reported with its line number; the others are
    written. `confirmed` (the operator holds these people's consent) counts for rows the file gives no status;
    a row's status is kept as the file says it, a pending one stays pending (and gets its confirmation mail),
    an unsubscribed, bounced or complained one is kept as a suppression. A row without its own consent record
    records `consent` (e.g. operator-import). Addresses already on the list are never resubscribed.

    `dry_run`: the preview of an import. Every batch is written as for real, counted, and rolled back, so the
    report is what the import would do against the list as it is now, by the very same rules."""
    rows, refused = read_csv(data, known_tags)
    report = ImportReport(refused=refused)
    done = 0
    while done < len(rows):
        # One transaction of about BATCH_SECONDS, written a chunk at a time, then a pause.
        started = time.monotonic()
        with engine.connect() as connection, connection.begin() as transaction:
            while done < len(rows) and time.monotonic() - started < BATCH_SECONDS:
                chunk = rows[done : done + CHUNK_ROWS]
                _write(connection, chunk, confirmed, consent, report)
                done += len(chunk)
            if dry_run:
                transaction.rollback()
        if progress:
            progress(done, len(rows))
        if done < len(rows):
            time.sleep(PAUSE_SECONDS)
    return report


def _write(connection: Connection, chunk: list[ImportRow], confirmed: bool, consent: Consent, report: ImportReport) -> None:
    values = [_values(row, confirmed, consent) for row in chunk]
    inserted = store.insert_many_if_absent(connection, values)
    for row, row_values in zip(chunk, values, strict=True):
        key = row.request.address.key
        if key in inserted:
            report.imported += 1
            if row_values["status"] == "pending":
                delivery_store.queue_confirmation(connection, inserted[key], consent.at)
                report.pending += 1
            continue
        existing = store.find(connection, key)
        assert existing is not None
        if row.status in SUPPRESSED:
            if existing.status in SUPPRESSED:
                report.skipped += 1
                continue
            # The other list says this person left: honour it here too.
            store.change(connection, existing.id, status=row.status, unsubscribed_at=row_values.get("unsubscribed_at"),
                         status_reason=row_values["status_reason"])
            report.updated += 1
            continue
        result = add_existing(connection, existing, confirmed=row_values["status"] == "active",
                              consent=row.consent or consent, confirmed_at=row.history.get("confirmed_at"))
        if result.outcome is AddOutcome.ACTIVATED:
            report.updated += 1
        else:
            report.skipped += 1


def _values(row: ImportRow, confirmed: bool, consent: Consent) -> dict[str, Any]:
    """The new row for an import row: its status as the file says, else active with `confirmed`."""
    if row.status not in SUPPRESSED:
        activate = row.status == "active" if row.status else confirmed
        return added_row(row.request, confirmed=activate, consent=row.consent or consent, history=row.history)
    values = new_row(row.request, row.status, (row.consent or consent).at) | {"status_reason": "imported as " + row.status}
    if row.consent:
        values |= consent_values(row.consent)
    if row.status == "unsubscribed":
        values["unsubscribed_at"] = consent.at
    return values | row.history


def export_row(subscriber: Subscriber) -> dict[str, str]:
    values = {name: getattr(subscriber, name) for name in EXPORT_COLUMNS}
    return {
        name: (" ".join(value) if isinstance(value, tuple) else value.isoformat() if isinstance(value, datetime) else str(value or ""))
        for name, value in values.items()
    }


def export_csv(engine: Engine, out: IO[str]) -> int:
    """Write every subscriber (suppressions included: they must follow the list) as CSV; return the count."""
    with engine.connect() as connection:
        return write_csv(store.every(connection), out)


def write_csv(rows: Iterable[Subscriber], out: IO[str]) -> int:
    """Write these subscribers as CSV (the columns `import_csv` reads); return the count."""
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    written = 0
    for subscriber in rows:
        writer.writerow({name: spreadsheet_safe(value) for name, value in export_row(subscriber).items()})
        written += 1
    return written
