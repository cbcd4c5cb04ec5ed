"""A real browser for the tests: Playwright driving Debian's Chromium, with axe-core for accessibility.

Reusable for any HTML (mails here, web pages elsewhere): `browser` is a Chromium per test module (conftest
re-exports the fixture; not per session, as Playwright's sync API keeps an event loop running that would stop
later tests from calling asyncio.run), `axe_script` the axe-core source installed from npm on first use, and `opened` a page
at a viewport width and colour scheme that writes a screenshot to tests/.artifacts/ when a check in it fails.

Needs `apt-get install chromium` (Playwright's own browser download is never used) and, for axe-core, npm
with the registry reachable; without them the tests skip and say which is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / ".artifacts"
AXE_VERSION = "4"
Scheme = Literal["light", "dark"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's), for the tests of one module."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install -e '.[test]'")
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests skipped: no {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def axe_script(request: pytest.FixtureRequest) -> str:
    """axe-core's browser script, installed with npm into pytest's cache folder (not committed) on first use."""
    folder = Path(request.config.cache.mkdir("axe-core"))
    script = folder / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("axe-core checks skipped: npm is not installed")
        try:
            done = subprocess.run(
                [npm, "install", "--prefix", str(folder), "--no-save", "--no-audit", "--no-fund", f"axe-core@{AXE_VERSION}"],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("axe-core checks skipped: npm install axe-core timed out (registry unreachable?)")
        if done.returncode != 0 or not script.exists():
            pytest.skip(f"axe-core checks skipped: npm install axe-core failed: {done.stderr.strip()[-300:]}")
    return script.read_text(encoding="utf-8")


@contextmanager
def opened(
    browser: Any, html: str = "", *, width: int, scheme: Scheme, name: str, url: str | None = None
) -> Iterator[Any]:
    """A page showing `html` (or, given `url`, the page there) at `width` px in `scheme`; nothing else is
    fetched from the network (remote images fail at once, as in a mail client that blocks them; with `url`,
    that server stays reachable). A failing check inside writes tests/.artifacts/<name>-<width>-<scheme>.png
    before the error goes on."""
    # A served page's Content-Security-Policy forbids scripts, axe-core's too: the tests' own script is let in.
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme, bypass_csp=url is not None)
    origin = re.match(r"https?://[^/]+/", url or "")
    context.route(
        lambda address: not (origin and address.startswith(origin.group())) and re.match(r"^https?://", address),
        lambda route: route.abort(),
    )
    page = context.new_page()
    try:
        if url is None:
            page.set_content(html, wait_until="load")
        else:
            page.goto(url, wait_until="load")
        yield page
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}-{scheme}.png"), full_page=True)
        raise
    finally:
        context.close()


def horizontal_overflow(page: Any) -> list[str]:
    """What makes the document wider than the viewport: empty when nothing does."""
    return page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            if (document.documentElement.scrollWidth <= width) return [];
            return [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > width + 0.5)
                .slice(0, 5)
                .map(e => `${e.tagName.toLowerCase()}.${e.className} right=${Math.round(e.getBoundingClientRect().right)}`)
                .concat([`document ${document.documentElement.scrollWidth}px > ${width}px`]);
        }"""
    )


def contrast(page: Any, selector: str) -> float:
    """The WCAG contrast ratio of the text of the first element matching `selector` against the background
    it is drawn on (its own or the nearest ancestor's), from the computed styles."""
    foreground, background = page.evaluate(
        """(selector) => {
            const element = document.querySelector(selector);
            if (!element) throw new Error(`nothing matches ${selector}`);
            let node = element, background = 'rgb(255, 255, 255)';
            while (node && node.nodeType === 1) {
                const colour = getComputedStyle(node).backgroundColor;
                if (colour && colour !== 'transparent' && !colour.endsWith(', 0)')) { background = colour; break; }
                node = node.parentElement;
            }
            return [getComputedStyle(element).color, background];
        }""",
        selector,
    )
    return colour_contrast(foreground, background)


def colour_contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two CSS colours as computed styles give them (`rgb(…)`)."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _luminance(css_colour: str) -> float:
    red, green, blue = (int(value) / 255 for value in re.findall(r"[\d.]+", css_colour)[:3])

    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.03928 else ((channel + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def axe_violations(page: Any, axe_script: str, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's violations of the given impacts on the page, one line each (rule, impact, first targets)."""
    page.add_script_tag(content=axe_script)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        + ", ".join(str(node["target"]) for node in violation["nodes"][:3])
        for violation in result["violations"]
        if violation["impact"] in impacts
    ]
