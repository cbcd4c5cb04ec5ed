"""The subscriber list as CSV: import (the operator's file or the admin API's body) and export."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import Engine

from feedsvc.store import subscribers as store
from feedsvc.store.schema import STATUSES
from feedsvc.store.subscribers import Subscriber
from feedsvc.subscriptions.addresses import InvalidInput, SubscriptionRequest, subscription_request
from feedsvc.subscriptions.lifecycle import SUPPRESSED, AddOutcome, Consent, add_within, new_row

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


@dataclass
class ImportReport:
    added: list[Subscriber] = field(default_factory=list)
    activated: list[Subscriber] = field(default_factory=list)
    existing: list[Subscriber] = field(default_factory=list)
    suppressed: list[Subscriber] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)

    @property
    def to_confirm(self) -> list[Subscriber]:
        return [subscriber for subscriber in self.added if subscriber.status == "pending"]

    def summary(self) -> dict[str, Any]:
        return {
            "added": len(self.added),
            "activated": len(self.activated),
            "existing": len(self.existing),
            "suppressed": len(self.suppressed),
            "problems": [{"line": line, "reason": reason} for line, reason in self.problems],
        }


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (no header, no email column, not UTF-8)."""


def decode_csv(data: bytes) -> str:
    """The text of an uploaded CSV (UTF-8, with or without a byte order mark)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(f"line {line}: the file is not UTF-8 text (save it as CSV UTF-8)") from None


def import_csv(engine: Engine, data: bytes, *, confirmed: bool, consent: Consent) -> ImportReport:
    """Import a CSV with a header row naming at least `email` (also: name, frequency, tags, status).

    Each bad row is reported with its line number and skipped; the others are imported. A row whose status
    column says unsubscribed/bounced/complained (an export from another list) is kept as a suppression.
    Imported rows record `consent.source` (e.g. operator-import) in their consent record.
    """
    reader = csv.DictReader(io.StringIO(decode_csv(data), newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise ImportFileError(f"cannot read the header row: {exc}") from None
    if not header:
        raise ImportFileError("the file is empty: a header row naming an 'email' column is required")
    columns = {str(name).strip().lower(): name for name in header if name is not None}
    if "email" not in columns:
        raise ImportFileError(f"the header row has no 'email' column (found: {', '.join(map(str, header))})")
    report = ImportReport()
    seen: dict[str, int] = {}
    with engine.begin() as connection:
        while True:
            try:
                raw = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                report.problems.append((reader.line_num, f"unreadable row: {exc}"))
                continue
            line = reader.line_num
            row = {key: raw.get(original) for key, original in columns.items()}
            if None in raw:
                report.problems.append((line, "more fields than the header row names"))
                continue
            try:
                request = subscription_request(row["email"], row.get("name"), row.get("frequency"), row.get("tags"))
                status = (row.get("status") or "").strip().lower()
                if status and status not in STATUSES:
                    raise InvalidInput("status", f"must be one of {', '.join(STATUSES)}")
            except InvalidInput as exc:
                report.problems.append((line, str(exc)))
                continue
            if request.address.key in seen:
                report.problems.append((line, f"email: {request.address.email} is already on line {seen[request.address.key]}"))
                continue
            seen[request.address.key] = line
            if status in SUPPRESSED:
                _import_suppression(connection, request, status, consent, report)
                continue
            result = add_within(connection, request, confirmed=confirmed, consent=consent)
            {
                AddOutcome.ADDED: report.added,
                AddOutcome.ACTIVATED: report.activated,
                AddOutcome.EXISTS: report.existing,
                AddOutcome.SUPPRESSED: report.suppressed,
            }[result.outcome].append(result.subscriber)
    return report


def _import_suppression(connection, request: SubscriptionRequest, status: str, consent: Consent, report: ImportReport) -> None:
    row = new_row(request, status, consent.at) | {"status_reason": "imported as " + status}
    if status == "unsubscribed":
        row["unsubscribed_at"] = consent.at
    if store.insert_if_absent(connection, **row):
        report.suppressed.append(store.find(connection, request.address.key))  # type: ignore[arg-type]
        return
    existing = store.find(connection, request.address.key)
    assert existing is not None
    if existing.status in ("pending", "active"):
        # The other list says this person left: honour it here too.
        store.change(connection, existing.id, status=status, unsubscribed_at=row.get("unsubscribed_at"),
                     status_reason=row["status_reason"])
        existing = store.get(connection, existing.id)
    report.suppressed.append(existing)  # type: ignore[arg-type]


def export_row(subscriber: Subscriber) -> dict[str, str]:
    values: Mapping[str, Any] = {name: getattr(subscriber, name) for name in EXPORT_COLUMNS}
    return {
        name: (" ".join(value) if isinstance(value, tuple) else value.isoformat() if isinstance(value, datetime) else str(value or ""))
        for name, value in values.items()
    }


def _spreadsheet_safe(value: str) -> str:
    # A cell starting like a formula runs as one when the file is opened in a spreadsheet (CSV injection).
    return "'" + value if value.startswith(("=", "+", "-", "@", "\t", "\r")) else value


def export_csv(engine: Engine, out: IO[str]) -> int:
    """Write every subscriber (suppressions included: they must follow the list) as CSV; return the count."""
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    written = 0
    with engine.connect() as connection:
        for subscriber in store.every(connection):
            writer.writerow({name: _spreadsheet_safe(value) for name, value in export_row(subscriber).items()})
            written += 1
    return written
