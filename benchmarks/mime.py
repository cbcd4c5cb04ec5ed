"""MIME benchmark: feedsvc's message skeleton vs the standard library's `email` package, same mail, same run.

    .venv/bin/python benchmarks/mime.py [--recipients 1000] [--rounds 5]

feedsvc writes a digest's multipart/alternative body once (quoted-printable, split around the per-recipient
links) and joins it with each recipient's headers (`mail.message.MessageSkeleton`). The library way builds an
`EmailMessage` per recipient (`set_content` + `add_alternative`, quoted-printable, SMTP policy) and serialises
it. Both get the same subject, a 30 KB HTML part and its text part, and per recipient the To, Date,
Message-ID, List-Unsubscribe headers and the unsubscribe and preferences links inside both parts. Only
building the bytes of every recipient's message is timed; rounds are interleaved (one round of each row in
turn), and the table gives the medians. Before timing, both messages of one recipient are parsed back and
must carry the same headers and the same decoded parts.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from feedsvc.config import Settings
from feedsvc.mail.message import PREFERENCES_URL, UNSUBSCRIBE_URL, MessageSkeleton

SUBJECT = "Catatan Kebun — ringkasan harian, 5 Desember 2026 🌱"
PARAGRAPH = (
    "Pagi ini hujan turun pelan di kebun belakang; daun pepaya berkilau dan siput keluar dari persembunyiannya. "
    "Kami mencatat suhu, kelembapan dan tinggi bibit cabai yang ditanam minggu lalu — tumbuh 2 cm! "
)


def bodies() -> tuple[str, str]:
    """A digest's HTML (about 30 KB) and text parts, the links as the renderer leaves them for the skeleton."""
    posts = "".join(f"<h2>Tulisan {n}</h2>" + f"<p>{PARAGRAPH}</p>" * 5 for n in range(1, 25))
    html = (
        f"<!DOCTYPE html><html lang=\"id\"><body><div style=\"max-width:600px\">{posts}"
        f"<p><a href=\"{UNSUBSCRIBE_URL}\">Berhenti berlangganan</a> · <a href=\"{PREFERENCES_URL}\">Atur preferensi</a></p>"
        "</div></body></html>"
    )
    text = f"{PARAGRAPH}\n\n" * 60 + f"Berhenti berlangganan: {UNSUBSCRIBE_URL}\nAtur preferensi: {PREFERENCES_URL}\n"
    return html, text


def recipient(number: int) -> dict[str, str]:
    return {
        "to_email": f"pembaca{number}@example.org",
        "to_name": f"Pembaca {number}",
        "unsubscribe_url": f"https://blog.example.org/unsubscribe/token-{number:08}",
        "preferences_url": f"https://blog.example.org/preferences/token-{number:08}",
        "message_id": f"<edition-1.sub-{number}@blog.example.org>",
    }


def with_stdlib(html: str, text: str, sender: str) -> Callable[[dict[str, str], datetime], bytes]:
    def build(values: dict[str, str], date: datetime) -> bytes:
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = sender
        message["To"] = f"{values['to_name']} <{values['to_email']}>"
        message["Subject"] = SUBJECT
        message["Date"] = format_datetime(date)
        message["Message-ID"] = values["message_id"]
        message["List-Unsubscribe"] = f"<{values['unsubscribe_url']}>, <mailto:news@blog.example.org?subject=unsubscribe>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"

        def filled(body: str) -> str:
            return body.replace(UNSUBSCRIBE_URL, values["unsubscribe_url"]).replace(PREFERENCES_URL, values["preferences_url"])

        message.set_content(filled(text), cte="quoted-printable")
        message.add_alternative(filled(html), subtype="html", cte="quoted-printable")
        return message.as_bytes()

    return build


def with_skeleton(skeleton: MessageSkeleton) -> Callable[[dict[str, str], datetime], bytes]:
    def build(values: dict[str, str], date: datetime) -> bytes:
        return bytes(skeleton.build(date=date, **values))

    return build


def parts(raw: bytes) -> tuple[str, str, str, str]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return (
        str(message["Subject"]),
        str(message["To"]),
        message.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip(),  # type: ignore[union-attr]
        message.get_body(("html",)).get_content().replace("\r\n", "\n").rstrip(),  # type: ignore[union-attr]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    settings = Settings.model_validate(
        {
            "site": {"title": "Catatan Kebun", "url": "https://blog.example.org", "language": "id"},
            "mail": {"from_address": "news@blog.example.org"},
            "web": {"secret_key": "benchmark-secret-key-of-at-least-32-bytes"},
        }
    )
    html, text = bodies()
    skeleton = MessageSkeleton(settings, subject=SUBJECT, html_body=html, text_body=text)
    rows = [
        ("feedsvc MessageSkeleton", with_skeleton(skeleton)),
        ("stdlib EmailMessage per recipient (quoted-printable, SMTP policy)", with_stdlib(html, text, "Catatan Kebun <news@blog.example.org>")),
    ]
    date = datetime.now(UTC).replace(microsecond=0)
    first = recipient(0)
    ours, theirs = (parts(build(first, date)) for _, build in rows)
    assert ours == theirs, "the two ways must build the same message"
    recipients = [recipient(number) for number in range(arguments.recipients)]
    times: dict[str, list[float]] = {label: [] for label, _ in rows}
    for _ in range(arguments.rounds):
        for label, build in rows:
            started = time.perf_counter()
            for values in recipients:
                build(values, date)
            times[label].append(time.perf_counter() - started)
    size = len(rows[0][1](first, date))
    print(
        f"{arguments.recipients:,} recipients, {size / 1024:.1f} KiB per message, medians of {arguments.rounds} "
        f"interleaved rounds, load average {os.getloadavg()[0]:.2f}"
    )
    print("| builder | time | per message | messages/s | vs feedsvc |")
    print("|---|---|---|---|---|")
    baseline = statistics.median(times[rows[0][0]])
    for label, _ in rows:
        seconds = statistics.median(times[label])
        print(
            f"| {label} | {seconds * 1000:,.0f} ms | {seconds / arguments.recipients * 1e6:.0f} µs "
            f"| {arguments.recipients / seconds:,.0f} | {seconds / baseline:.2f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
