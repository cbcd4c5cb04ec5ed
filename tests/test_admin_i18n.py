# ruff: noqa: F811  (test functions take the `serve` fixture imported from test_web)
"""The dashboard in the site's language: an Indonesian site's admin pages, notes and labels through a real
server, with none of the English ones left."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from conftest import add_subscribers, write_post
from test_admin import NOW, admin_routes, concrete, form_token, seed_edition, signed_in
from test_web import serve  # noqa: F401  (the real-server fixture)

# English words of the dashboard's own (not the data's) that an Indonesian page must not show.
ENGLISH = ["Overview", "Subscribers", "Editions", "Sign out", "Search", "Actions", "Next page", "None.",
           "Your password, to confirm", "Cadence", "confirmed", "Scheduled", "Drafts", "Import"]


def test_an_indonesian_site_has_an_indonesian_dashboard(serve):
    served = serve(site={"language": "id", "timezone": "Asia/Jakarta"})
    [subscriber_id] = add_subscribers(served.engine, ["ani@example.org"], confirmed_at=NOW)
    edition_id = seed_edition(served, [subscriber_id], ["sent"])
    # A Wednesday, 08:00 in Jakarta: the daily digest of Thursday (Kamis) carries it.
    write_post(served.settings.posts.dir, "later.md", title="Nanti", date=datetime(2030, 1, 16, 1, 0, tzinfo=UTC))
    with served.client() as client:
        login = client.get("/admin/login").text
        assert '<html lang="id">' in login and "Kata sandi" in login and ">Masuk</button>" in login
    with signed_in(served) as client:
        for route in admin_routes(served):
            if "GET" not in (route.methods or ()) or route.path.endswith(("/copy", ".csv", "/login")):
                continue
            page = client.get(concrete(route.path, subscriber_id, edition_id))
            assert page.status_code == 200, route.path
            assert '<html lang="id">' in page.text and "Keluar (admin)" in page.text, route.path
            words = re.sub(r"<[^>]+>", " ", page.text)  # what the page shows
            leaked = [word for word in ENGLISH if word in words]
            assert not leaked, (route.path, leaked)
        overview = client.get("/admin/").text
        assert ">Ringkasan</h1>" in overview and '<th scope="row">terkonfirmasi</th>' in overview
        assert '<th scope="row">harian</th>' in overview
        posts = client.get("/admin/posts").text
        assert "Terjadwal (1)" in posts and "harian: Kam 2030-01-17 08:00" in re.sub(r"<[^>]+>", "", posts)
        token = form_token(client, f"/admin/subscribers/{subscriber_id}")
        done = client.post(f"/admin/subscribers/{subscriber_id}", data={"csrf_token": token, "action": "unsubscribe"},
                           follow_redirects=True)
        assert '<p class="note" role="status">Langganan dihentikan.</p>' in done.text
        assert "berhenti" in done.text
        wrong = client.post(f"/admin/editions/{edition_id}", data={"csrf_token": token, "action": "send_test",
                                                                   "address": "editor@example.org"},
                            follow_redirects=True)
        assert "Salinan uji coba dikirim ke editor@example.org." in wrong.text
    with served.client() as client:
        token = form_token(client, "/admin/login")
        refused = client.post("/admin/login", data={"csrf_token": token, "username": "admin", "password": "salah"})
        assert refused.status_code == 401 and "Nama pengguna, kata sandi, atau kodenya tidak benar." in refused.text
