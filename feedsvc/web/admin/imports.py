"""Subscribers from a CSV file: upload, a preview of what the import would do (with every refused line and its
reason), then, with the password given again, the import of exactly the file previewed.

The file is read by the same code as `feedsvc subscribers import` and the API's import, under the same consent
rules (the operator's consent record, "confirmed" only when ticked). Between the two steps it waits on the
server's disk under a name derived from the session and a random token: only the session that uploaded it can
import it, the bytes imported are the bytes previewed, and one confirmation imports it once. A file left
unconfirmed is removed after PENDING_SECONDS.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route

from feedsvc import subscriptions
from feedsvc.config import Settings
from feedsvc.store.admin import Session
from feedsvc.subscriptions import ImportFileError, ImportReport
from feedsvc.web.admin.common import PREFIX, Admin, admin_page, admin_upload
from feedsvc.web.api import confirmations_task, operator_consent

UPLOAD_PATH = f"{PREFIX}/subscribers/import"
PENDING_SECONDS = 3600
SHOWN_PROBLEMS = 1000  # refused lines listed on the preview; the count says how many more
FORM_OVERHEAD = 16 * 1024  # the upload form's other fields and its multipart framing, past the file itself


def admin_body_limits(settings: Settings) -> dict[str, int]:
    """The request body limits of the dashboard's uploads (others have the app's small default)."""
    return {UPLOAD_PATH: settings.web.max_import_bytes + FORM_OVERHEAD}


@dataclass(frozen=True, slots=True)
class PendingImport:
    data: bytes
    confirmed: bool
    filename: str


def _folder(settings: Settings) -> Path:
    return settings.store.dir / "admin-imports"


def _stem(session: Session, token: str) -> str:
    return hmac.new(session.id.encode(), token.encode(), hashlib.sha256).hexdigest()


def keep(settings: Settings, session: Session, upload: PendingImport) -> str:
    """Keep an uploaded file for its confirmation; the token that names it for this session."""
    folder = _folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    oldest = time.time() - PENDING_SECONDS
    for stale in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):  # another request may be removing it too
            if stale.stat().st_mtime < oldest:
                stale.unlink()
    token = secrets.token_urlsafe(24)
    stem = _stem(session, token)
    meta = {"confirmed": upload.confirmed, "filename": upload.filename}
    (folder / f"{stem}.json").write_text(json.dumps(meta), encoding="utf-8")
    (folder / f"{stem}.csv").write_bytes(upload.data)
    return token


def take(settings: Settings, session: Session, token: str) -> PendingImport | None:
    """The file kept for this session under `token`, removed from the folder; None when there is none (another
    session's, expired, or taken already: a second confirmation does nothing)."""
    folder, stem = _folder(settings), _stem(session, token)
    taken = folder / f"{stem}.{secrets.token_hex(8)}.taken"
    try:
        os.rename(folder / f"{stem}.csv", taken)  # atomic: of two confirmations at once, one gets the file
    except FileNotFoundError:
        return None
    try:
        if taken.stat().st_mtime < time.time() - PENDING_SECONDS:
            return None
        meta = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
        data = taken.read_bytes()
    finally:
        taken.unlink()
        (folder / f"{stem}.json").unlink(missing_ok=True)
    return PendingImport(data, bool(meta["confirmed"]), str(meta["filename"]))


def _run_import(admin: Admin, upload: PendingImport, *, dry_run: bool) -> ImportReport:
    return subscriptions.import_csv(
        admin.web.engine, upload.data, confirmed=upload.confirmed,
        consent=operator_consent(admin.request, "operator-import"), known_tags=admin.web.topics(), dry_run=dry_run,
    )


def _form(admin: Admin, *, status: int = 200, problem: str = "") -> Response:
    return admin.render("import", status=status, problem=problem, preview=None, topics=sorted(admin.web.topics()),
                        max_bytes=admin.web.settings.web.max_import_bytes)


@admin_page
async def form_page(admin: Admin) -> Response:
    return _form(admin)


@admin_upload
async def preview(admin: Admin) -> Response:
    """What the import of the uploaded file would do, line by line; nothing is written yet."""
    assert admin.form is not None
    uploaded = admin.form.get("file")
    if not isinstance(uploaded, UploadFile) or not uploaded.filename:
        return _form(admin, status=400, problem=admin.web.translate("admin_choose_file"))
    limit = admin.web.settings.web.max_import_bytes
    data = await uploaded.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"the file is larger than {limit} bytes; nothing was imported")
    upload = PendingImport(data, admin.field("confirmed") == "yes", uploaded.filename[:200])
    try:
        report = await admin.run(_run_import, admin, upload, dry_run=True)
    except ImportFileError as exc:
        return _form(admin, status=400, problem=str(exc))
    token = await admin.run(keep, admin.web.settings, admin.session, upload)
    return admin.render(
        "import", problem="", preview=report, token=token, upload=upload, shown_problems=report.refused[:SHOWN_PROBLEMS],
        topics=sorted(admin.web.topics()), max_bytes=limit,
    )


@admin_page
async def confirm(admin: Admin) -> Response:
    await admin.require_password()
    upload = await admin.run(take, admin.web.settings, admin.session, admin.field("token"))
    if upload is None:
        raise HTTPException(
            400, "this preview was imported already or has expired; upload the file again to see a new preview"
        )
    try:
        report = await admin.run(_run_import, admin, upload, dry_run=False)
    except ImportFileError as exc:  # not after a preview of the same bytes; kept for a clear answer regardless
        raise HTTPException(400, str(exc)) from None
    summary = (
        f"{report.imported} added ({report.pending} pending confirmation), {report.updated} updated, "
        f"{report.skipped} skipped, {len(report.refused)} lines refused"
    )
    await admin.audit("import", "subscribers", f"{upload.filename}{' (confirmed)' if upload.confirmed else ''}: {summary}")
    note = admin.web.translate(
        "admin_note_imported", file=upload.filename, added=report.imported, pending=report.pending,
        updated=report.updated, skipped=report.skipped, refused=len(report.refused),
    )
    response = admin.redirect(f"{PREFIX}/subscribers", note)
    response.background = confirmations_task(admin.web, report.pending > 0)
    return response


routes = [
    Route(UPLOAD_PATH, form_page, methods=["GET"]),
    Route(UPLOAD_PATH, preview, methods=["POST"]),
    Route(f"{UPLOAD_PATH}/confirm", confirm, methods=["POST"]),
]
