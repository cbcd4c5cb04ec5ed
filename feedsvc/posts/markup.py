"""Post bodies to sanitized HTML whose links and images are absolute URLs.

Markdown is CommonMark + tables + strikethrough with raw HTML allowed: whole bodies are rendered by
markdown-it-pyrs (the Rust port of markdown-it: the same HTML, over ten times faster, which is what lets a cold
build of a large blog beat Hugo), which also gives the tree in which the summary's first paragraph is found.
Plain text is escaped and kept line for line; both then go through nh3, which also rewrites every URL.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Literal
from urllib.parse import urljoin

import markdown_it_pyrs
import nh3

Markup = Literal["markdown", "text", "html"]
AssetUrls = tuple[tuple[str, str], ...]  # (relative prefix, absolute prefix), longest prefix first

MORE = "<!--more-->"

_fast_markdown = markdown_it_pyrs.MarkdownIt("commonmark").enable("table").enable("strikethrough")
_URL_ATTRIBUTES = {"href", "src", "cite"}
_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES["a"] = _ATTRIBUTES["a"] | {"title"}
_ATTRIBUTES["img"] = _ATTRIBUTES["img"] | {"title"}
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_BARE_URL = re.compile(r"\bhttps?://[^\s<>\"']+")
_BLANK_LINES = re.compile(r"\n[ \t]*\n")
_LEADING_BLANK_LINES = re.compile(r"^(?:[ \t]*\n)+")
_TRAILING_PUNCTUATION = ".,;:!?)]}\"'”’»"

# (tag, attribute, URL as written) for each link or image; `lint` collects them while rendering.
LinkSink = Callable[[str, str, str], None]

# Bounds on a Markdown body, checked before it is rendered (the folder is untrusted input). Past them the
# renderers misbehave: markdown-it-pyrs overflows its stack (the process dies) on some 50,000 nested quotes or
# list items, its emphasis and link matching is quadratic in the delimiters of a paragraph, and nh3's is in the
# depth of the HTML. Real posts stay far below: a few levels of nesting, dozens of delimiters per paragraph.
MAX_NESTING = 32  # container markers (> - + * 1.) opening one line
MAX_HTML_DEPTH = 256  # raw HTML elements open at once
MAX_DELIMITER_WORK = 20_000_000  # sum over paragraphs of (their * _ ~ [ characters) squared
# Searched in the text after a "\n": a pattern starting with a literal is found by a fast scan for it, where `^`
# would be tried at every character (a third of the cost of reading a post).
_DEEP_LINE = re.compile(
    rf"\n[ \t]*(?:(?:>|[-+*](?=[ \t]|$)|\d{{1,9}}[.)](?=[ \t]|$))[ \t]*){{{MAX_NESTING + 1}}}", re.MULTILINE
)
_DELIMITERS = "*_~["
_HTML_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^<>]*?(/?)>")
# Elements that never hold others (void) or that the HTML parser closes by itself when the next one starts.
_FLAT_ELEMENTS = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
        "p",
        "li",
        "dt",
        "dd",
        "option",
        "tr",
        "td",
        "th",
    ]
)


def sorted_asset_urls(asset_urls: dict[str, str]) -> AssetUrls:
    return tuple(sorted(asset_urls.items(), key=lambda item: len(item[0]), reverse=True))


def absolute_url(url: str, base_url: str, asset_urls: AssetUrls) -> str:
    """Resolve a URL written in a post: mapped asset prefixes first (longest wins), else against the post."""
    if url.startswith("//"):
        return "https:" + url  # protocol-relative: a feed or a mail has no page protocol to borrow
    if _SCHEME.match(url):
        return url
    for prefix, target in asset_urls:
        if url.startswith(prefix):
            return target + url[len(prefix) :]
    return urljoin(base_url, url)


def sanitize(fragment: str, base_url: str, asset_urls: AssetUrls, links: LinkSink | None = None) -> str:
    def rewrite(tag: str, attribute: str, value: str) -> str | None:
        if attribute not in _URL_ATTRIBUTES:
            return value
        if links is not None:
            links(tag, attribute, value)
        return absolute_url(value, base_url, asset_urls)

    # nh3 has already dropped javascript: and other unknown schemes when `rewrite` runs.
    return nh3.clean(embeds_to_links(fragment), attributes=_ATTRIBUTES, attribute_filter=rewrite, link_rel=None)


# Elements that readers and mail clients do not show (and nh3 removes): each becomes a link to what it shows,
# with its poster image where it has one, rather than vanishing.
_EMBED = re.compile(
    r"<(iframe|video|audio|object|embed|script)\b([^>]*)>(?:(.*?)</\1\s*>)?", re.IGNORECASE | re.DOTALL
)
_EMBED_ATTRIBUTE = re.compile(r"""\b(src|data|poster|title)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_EMBED_NAMES = {"iframe": "Embedded content", "video": "Video", "audio": "Audio", "object": "Embedded content",
                "embed": "Embedded content", "script": "Script"}
_YOUTUBE_EMBED = re.compile(r"^(?:https?:)?//(?:www\.)?youtube(?:-nocookie)?\.com/embed/([\w-]+)")


def embeds_to_links(fragment: str) -> str:
    if "<" not in fragment:
        return fragment
    return _EMBED.sub(_embed_link, fragment)


def _embed_link(found: re.Match[str]) -> str:
    element = found.group(1).lower()
    attributes = {
        match.group(1).lower(): html.unescape(match.group(2) or match.group(3) or match.group(4) or "")
        for match in _EMBED_ATTRIBUTE.finditer(found.group(2) + " " + (found.group(3) or ""))
    }
    target = attributes.get("src") or attributes.get("data")
    if not target:
        return ""  # an inline script shows nothing by itself
    poster = attributes.get("poster")
    youtube = _YOUTUBE_EMBED.match(target)
    if youtube:
        target = f"https://www.youtube.com/watch?v={youtube.group(1)}"
        poster = poster or f"https://i.ytimg.com/vi/{youtube.group(1)}/hqdefault.jpg"
    label = html.escape(attributes.get("title") or _EMBED_NAMES[element])
    shown = f'<img src="{html.escape(poster)}" alt="{label}">' if poster else f"{label}: {html.escape(target)}"
    return f'<a href="{html.escape(target)}">{shown}</a>'


def text_to_html(text: str) -> str:
    """Plain text: paragraphs on blank lines, each line kept (joined by <br>), bare URLs linked."""
    paragraphs = []
    for block in _BLANK_LINES.split(text.strip()):
        lines = [_link_urls(line.strip()) for line in block.splitlines() if line.strip()]
        if lines:
            paragraphs.append("<p>" + "<br>\n".join(lines) + "</p>")
    return "\n".join(paragraphs)


def _link_urls(line: str) -> str:
    out, last = [], 0
    for match in _BARE_URL.finditer(line):
        url = match.group().rstrip(_TRAILING_PUNCTUATION)
        shown = html.escape(url, quote=False)
        out += [
            html.escape(line[last : match.start()], quote=False),
            f'<a href="{html.escape(url)}">{shown}</a>',
        ]
        last = match.start() + len(url)
    out.append(html.escape(line[last:], quote=False))
    return "".join(out)


def markdown_problem(text: str) -> str | None:
    """Why this Markdown must not be rendered (nested or tangled past the bounds above), or None."""
    lines = "\n" + text
    deep = _DEEP_LINE.search(lines)
    if deep is not None:
        return f"Markdown nested over {MAX_NESTING} levels deep on one line (line {lines.count(chr(10), 0, deep.start()) + 1} of the text)"
    # Counted only when there may be enough of them: most posts are shorter than the square root of the bound.
    delimiters = sum(text.count(char) for char in _DELIMITERS) if len(text) ** 2 > MAX_DELIMITER_WORK else 0
    if delimiters * delimiters > MAX_DELIMITER_WORK:
        work = sum(sum(block.count(char) for char in _DELIMITERS) ** 2 for block in _BLANK_LINES.split(text))
        if work > MAX_DELIMITER_WORK:
            return "Markdown with too many emphasis or link markers (* _ ~ [) in its paragraphs"
    if text.count("<") > MAX_HTML_DEPTH and _html_depth(text) > MAX_HTML_DEPTH:
        return f"HTML nested over {MAX_HTML_DEPTH} elements deep"
    return None


def _html_depth(text: str) -> int:
    depth = deepest = 0
    for tag in _HTML_TAG.finditer(text):
        if tag.group(3) or tag.group(2).lower() in _FLAT_ELEMENTS:
            continue
        depth = max(depth - 1, 0) if tag.group(1) else depth + 1
        deepest = max(deepest, depth)
    return deepest


class UnsafeMarkdown(ValueError):
    """Markdown past the bounds of `markdown_problem` (a file that changed since its scan checked it)."""


def _check_markdown(text: str) -> None:
    problem = markdown_problem(text)
    if problem is not None:
        raise UnsafeMarkdown(problem)


def to_html(markup: Markup, body: str) -> str:
    """Unsanitized HTML, relative URLs as written."""
    if markup == "text":
        return text_to_html(body)
    if markup == "html":
        return body
    _check_markdown(body)
    return _fast_markdown.render(body)


def render_body(markup: Markup, body: str, base_url: str, asset_urls: AssetUrls) -> str:
    return sanitize(to_html(markup, body), base_url, asset_urls)


def render_summary(markup: Markup, summary: str, body: str, base_url: str, asset_urls: AssetUrls) -> str:
    """`summary` as written, else the text before <!--more-->, else the first paragraph that has text."""
    if summary:
        fragment = to_html(markup, summary)
    elif (more := body.find(MORE)) >= 0:
        fragment = to_html(markup, body[:more])
    elif markup == "html":
        fragment = body[: end + 4] if (end := body.find("</p>")) >= 0 else body
    elif markup == "text":
        fragment = text_to_html(
            next((block for block in _BLANK_LINES.split(body.strip()) if block.strip()), "")
        )
    else:
        _check_markdown(body)
        fragment = _first_markdown_paragraph(body)
    return sanitize(fragment, base_url, asset_urls)


def _first_markdown_paragraph(body: str) -> str:
    # markdown-it-pyrs's tree of a growing prefix (cut at blank lines) until it holds a top-level paragraph with
    # text in it: the tree of a whole long body costs more than rendering it. A paragraph found in a prefix is one
    # in the whole body too. It is rendered on its own, with the body's link reference definitions (wherever
    # they stand: only where the rest of the body has none are the prefix's enough).
    blocks = _BLANK_LINES.split(_LEADING_BLANK_LINES.sub("", body))  # keeps the indentation of line one
    taken = 1
    while True:
        prefix = "\n\n".join(blocks[:taken]).encode()  # the tree's spans count UTF-8 bytes
        tree = _fast_markdown.tree(prefix.decode())
        paragraph = next((node for node in tree.children if node.name == "paragraph" and _has_text(node)), None)
        if paragraph is not None:
            break
        if taken >= len(blocks):
            return ""
        taken *= 2
    source = prefix
    if taken < len(blocks) and "]:" in "\n\n".join(blocks[taken:]):
        source = "\n\n".join(blocks).encode()
        tree = _fast_markdown.tree(source.decode())
    definitions = [_source_of(node, source) for node in tree.children if node.name == "definition"]
    return _fast_markdown.render(b"\n\n".join([_source_of(paragraph, prefix), *definitions]).decode())


def _source_of(node: markdown_it_pyrs.Node, source: bytes) -> bytes:
    assert node.srcmap is not None, "a block always has its span"
    start, end = node.srcmap
    return source[start:end]


def _has_text(node: markdown_it_pyrs.Node) -> bool:
    """Whether a paragraph shows text: an image's alt text or inline code alone is not a summary."""
    return any(
        (child.name == "text" and child.meta["content"].strip())
        or (child.name not in ("image", "code_inline") and _has_text(child))
        for child in node.children
    )
