"""SpamAssassin's verdict on the mails feedsvc sends: Debian's `spamassassin` with local tests only (-L)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from mail_samples import sample_mails

SPAMASSASSIN = shutil.which("spamassassin")


@pytest.mark.skipif(SPAMASSASSIN is None, reason="spamassassin not installed (apt-get install spamassassin)")
@pytest.mark.parametrize("language", ["en", "id"])
def test_confirmation_and_digests_score_nothing_with_spamassassin(make_settings, tmp_path, language):
    settings = make_settings(site={"language": language, "title": "Catatan Backend"})
    for name, message in sample_mails(settings).items():
        checked = subprocess.run(
            [str(SPAMASSASSIN), "-L", "-p", str(tmp_path / "user_prefs")],  # its own prefs file: no ~/.spamassassin
            input=message,
            capture_output=True,
            timeout=120,
            check=True,
        )
        headers = checked.stdout.split(b"\r\n\r\n" if b"\r\n\r\n" in checked.stdout else b"\n\n")[0].decode()
        status = re.search(r"^X-Spam-Status: (.*(?:\r?\n[ \t].*)*)", headers, re.MULTILINE)
        assert status, f"{name}: no X-Spam-Status in spamassassin's output: {checked.stderr.decode()[-300:]}"
        verdict = " ".join(status.group(1).split())
        score = float(re.search(r"score=(-?[\d.]+)", verdict).group(1))
        assert score <= 0, f"{name}: {verdict}"
        assert "HTML_FONT_LOW_CONTRAST" not in verdict
