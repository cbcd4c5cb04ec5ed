# ruff: noqa: F811  (test functions take the `serve` fixture imported from test_web)
"""The subscriber list filtered by topic through a real server, both store backends: keyset pages through the
whole match in every sort, and the CSV export of the same filter."""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import quote

from conftest import add_subscribers
from test_admin import NOW, signed_in
from test_web import serve  # noqa: F401  (the real-server fixture)


def every_page(client, path: str) -> list[str]:
    seen: list[str] = []
    while path:
        page = client.get(path)
        assert page.status_code == 200, page.text
        seen += re.findall(r">([\w.]+@example\.org)</a>", page.text)
        found = re.search(r'href="([^"]+)" rel="next"', page.text)
        path = found.group(1).replace("&amp;", "&") if found else ""
    return seen


def test_the_topic_filter_pages_by_key_and_the_export_follows_it(serve, store_url):
    served = serve(store={"url": store_url})
    python = [f"py{i:03}@example.org" for i in range(70)]
    both = [f"both{i:02}@example.org" for i in range(30)]
    add_subscribers(served.engine, python, tags=["python"], confirmed_at=NOW)
    add_subscribers(served.engine, both, tags=["go", "python"], confirmed_at=NOW)
    add_subscribers(served.engine, [f"all{i}@example.org" for i in range(5)], confirmed_at=NOW)
    add_subscribers(served.engine, ["pythonista@example.org"], tags=["pythonista"], confirmed_at=NOW)
    add_subscribers(served.engine, ["cafe@example.org"], tags=["café"], confirmed_at=NOW)
    add_subscribers(served.engine, ["axb@example.org"], tags=["axb"], confirmed_at=NOW)
    with signed_in(served) as client:
        for sort in ("newest", "oldest", "email"):
            seen = every_page(client, f"/admin/subscribers?topic=python&sort={sort}")
            assert sorted(seen) == sorted(python + both), sort  # each once; not "pythonista"
            if sort == "email":
                assert seen == sorted(seen)
        assert sorted(every_page(client, "/admin/subscribers?topic=go")) == both
        assert sorted(every_page(client, "/admin/subscribers?topic=%2A")) == [f"all{i}@example.org" for i in range(5)]
        assert every_page(client, f"/admin/subscribers?topic={quote('café')}") == ["cafe@example.org"]
        assert every_page(client, "/admin/subscribers?topic=a_b") == []  # "_" is no wildcard here
        page = client.get("/admin/subscribers?topic=go").text
        assert '<option value="go" selected>go</option>' in page and "<td>go, python</td>" in page
        exported = client.get("/admin/subscribers.csv?topic=go&sort=email")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [row["email"] for row in rows] == sorted(both) and {row["tags"] for row in rows} == {"go python"}
        bad = client.get("/admin/subscribers?topic=no/slash")
        assert bad.status_code == 400 and "is not a tag" in bad.text
