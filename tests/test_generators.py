"""Differential tests: a site folder written from each generator's documentation, published by the generator
itself and by `feedsvc build`; both feeds must hold the same posts, at the same URLs, with the same titles and
publication instants. A generator that is not installed here is skipped, saying how to install it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.generators import Items, Missing, feedsvc_items, generator_items


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def published(generator: str, tmp_path: Path, files: dict[str, str], url: str | None = None) -> tuple[Items, Items, str]:
    """The items of the generator's feed for the folder written from `files`, those of feedsvc's, and what
    `feedsvc build` said; skipped when the generator is not installed here."""
    site = write_tree(tmp_path / "site", files)
    try:
        expected = generator_items(generator, site, tmp_path / f"{generator}-out", url)
    except Missing as exc:
        pytest.skip(str(exc))
    got, output = feedsvc_items(tmp_path / "feedsvc", site, url)
    return expected, got, output


# --- Hugo -------------------------------------------------------------------------------------------------------

HUGO_SITE = {
    "hugo.toml": (
        'baseURL = "https://example.org/blog/"\ntitle = "Hugo site"\nlocale = "en-us"\n'
        'timeZone = "Asia/Jakarta"\n[permalinks]\n  posts = "/:year/:month/:slug/"\n'
    ),
    "layouts/_shortcodes/notice.html": '<div class="notice">{{ .Inner }}</div>\n',
    "content/_index.md": "---\ntitle: Home\n---\n",
    "content/posts/_index.md": "---\ntitle: Posts section\n---\nThe section's own page, not a post.\n",
    # A page bundle: the folder names the page; notes.md beside index.md is a resource of it.
    "content/posts/bundle-one/index.md": (
        '---\ntitle: "First bundle"\ndate: 2021-10-01 8:30:00+00:00\ntags: ["C", "C#", "C++"]\n---\n'
        'Intro here.\n\n<!--more-->\nRest {{< figure src="pic.png" caption="A pic" >}}\n'
    ),
    "content/posts/bundle-one/notes.md": "Not a page.\n",
    "content/posts/plain.md": (
        '+++\ntitle = "Plain TOML"\ndate = 2022-01-02T10:00:00\nslug = "custom-slug"\ncategories = "News"\n'
        "lastmod = 2022-02-01\n+++\n"
        "Hello {{< youtube w7Ft2ymGmfc >}} and {{% notice info %}}careful{{% /notice %}}.\n\n"
        '{{< highlight go >}}\nfmt.Println("hi")\n{{< /highlight >}}\n\nSee [the deep one]({{< ref "sub/deep.md" >}}).\n'
    ),
    "content/posts/draft.md": "---\ntitle: Draft\ndate: 2022-01-03\ndraft: true\n---\nd\n",
    "content/posts/future.md": "---\ntitle: Future\ndate: 2099-01-03\n---\nf\n",
    "content/posts/publish-later.md": "---\ntitle: Later\ndate: 2020-01-03\npublishDate: 2099-01-01\n---\nf\n",
    "content/posts/expired.md": "---\ntitle: Expired\ndate: 2020-01-03\nexpiryDate: 2020-06-01\n---\nf\n",
    "content/posts/sub/deep.md": "---\ntitle: Deep One\ndate: 2023-05-06T07:08:09+02:00\nurl: /custom/deep-url/\n---\ndeep\n",
    "content/posts/Mixed Case.md": "---\ntitle: Mixed case file\ndate: 2020-02-02T02:02:02Z\nslug: ''\n---\nm\n",
    "content/about.md": "---\ntitle: About\ndate: 2019-01-01\n---\nabout\n",
    "content/notes/first-note.md": "---\ntitle: A note\ndate: 2019-03-04\naliases: [/old/note/]\n---\nnote\n",
    # Two pages may share a slug where their URLs differ (the date is in the pattern).
    "content/posts/same-slug.md": "---\ntitle: Same slug A\ndate: 2023-01-01\nslug: twin\n---\na\n",
    "content/posts/same-slug-2.md": "---\ntitle: Same slug B\ndate: 2024-01-01\nslug: twin\n---\nb\n",
}


def test_hugo_publishes_the_same_posts_as_feedsvc(tmp_path: Path) -> None:
    expected, got, output = published("hugo", tmp_path, HUGO_SITE)
    assert got == expected
    assert len(expected) == 8
    assert "unknown shortcode {{< notice >}}" in output



# Two languages in one content folder (`post.fr.md` is French), the default one's pages below /en/ and with
# ugly URLs: Hugo's home feed is the default language's.
HUGO_LANGUAGES_BY_FILE_NAME = {
    "hugo.toml": (
        'baseURL = "https://example.org/"\ntitle = "Two languages"\ndefaultContentLanguage = "en"\n'
        "defaultContentLanguageInSubdir = true\nuglyURLs = true\n"
        '[permalinks]\n  posts = "/:year/:slug/"\n[languages.en]\n  weight = 1\n[languages.fr]\n  weight = 2\n'
    ),
    "content/posts/hello.md": "---\ntitle: Hello\ndate: 2021-01-01T10:00:00\n---\nx\n",
    "content/posts/hello.fr.md": "---\ntitle: Bonjour\ndate: 2021-01-01T10:00:00\n---\nx\n",
    "content/posts/only-french.fr.md": "---\ntitle: Seulement\ndate: 2021-02-01\n---\nx\n",
    # .de is no language of the site: part of the name, and the page is the default language's.
    "content/posts/notes.de.md": "---\ntitle: Notes on de\ndate: 2021-04-01\n---\nx\n",
    "content/posts/placed.md": "---\ntitle: Placed\ndate: 2021-03-01\nurl: /custom/place/\n---\nx\n",
    "content/about.md": "---\ntitle: About\ndate: 2021-04-01\n---\nx\n",
}

# A content folder per language (config/_default/languages.<lang>.toml), French the default, without a prefix.
HUGO_LANGUAGES_BY_FOLDER = {
    "config/_default/hugo.toml": 'baseURL = "https://example.org/site/"\ntitle = "Per folder"\ndefaultContentLanguage = "fr"\n',
    "config/_default/languages.en.toml": 'contentDir = "content/en"\nweight = 2\n',
    "config/_default/languages.fr.toml": 'contentDir = "content/fr"\nweight = 1\ntimeZone = "Europe/Paris"\n',
    "config/_default/permalinks.toml": 'post = "/:year/:month/:slug/"\n',
    "config/_default/params.toml": 'description = "not a post"\n',
    "content/en/post/first.md": "---\ntitle: First\ndate: 2021-01-01T10:00:00\n---\nx\n",
    "content/fr/post/premier.md": "---\ntitle: Premier\ndate: 2021-01-01T10:00:00\n---\nx\n",
    "content/fr/post/deuxieme.md": "---\ntitle: Deuxième\ndate: 2021-01-31T23:30:00\n---\nx\n",
    # The file name's language wins over the folder's.
    "content/fr/post/third.en.md": "---\ntitle: Third\ndate: 2021-01-02\n---\nx\n",
}


@pytest.mark.parametrize(
    ("files", "count"), [(HUGO_LANGUAGES_BY_FILE_NAME, 4), (HUGO_LANGUAGES_BY_FOLDER, 2)], ids=["file-name", "folder"]
)
def test_hugo_feed_is_the_default_languages_as_feedsvcs(tmp_path: Path, files: dict[str, str], count: int) -> None:
    expected, got, _ = published("hugo", tmp_path, files)
    assert got == expected
    assert len(expected) == count


# --- Jekyll -----------------------------------------------------------------------------------------------------

JEKYLL_SITE = {
    "_config.yml": (
        'title: Jekyll site\nurl: "https://example.com"\nbaseurl: "/blog"\ntimezone: Asia/Jakarta\nlang: id\n'
        "permalink: /:categories/:year/:month/:day/:title:output_ext\nplugins:\n  - jekyll-feed\n"
        "feed:\n  posts_limit: 100\nauthor: Site Author\n"
        # Front matter defaults: by path (a folder, a glob), the later and more specific winning.
        "defaults:\n"
        "  - scope: {path: '', type: posts}\n    values: {permalink: '/:categories/:year/:month/:day/:title:output_ext'}\n"
        "  - scope: {path: news, type: posts}\n    values: {permalink: '/news-archive/:year/:title/'}\n"
        "  - scope: {path: '_posts/2021-09-1*'}\n    values: {categories: [Globbed]}\n"
        "  - scope: {path: about.md, type: pages}\n    values: {permalink: '/never-a-post/'}\n"
        # A collection with pages of its own: jekyll-feed's feed lists site.posts only.
        "collections:\n  recipes:\n    output: true\n"
    ),
    "_recipes/2019-01-01-soup.md": "---\ntitle: Soup\ndate: 2019-01-01\n---\nA collection's document.\n",
    # No title and no date: both come from the file name.
    "_posts/2016-03-02-first-post.md": "---\nlayout: post\n---\nFrom the file name. {{ site.title }}\n",
    "_posts/2017-01-05-with-date.md": (
        '---\ntitle: "With date"\ndate: 2017-01-05 8:30:00 +0200\ncategories: Tech Linux\ntags: one two\n---\n'
        "Body {% highlight ruby %}\nputs 1\n{% endhighlight %}\nSee {% post_url 2016-03-02-first-post %}.\n"
    ),
    "_posts/2018-02-03-unpublished.md": "---\ntitle: Hidden\npublished: false\n---\nx\n",
    "_posts/2099-02-03-future.md": "---\ntitle: Future\n---\nx\n",
    "_posts/2019-04-05-permalink.md": (
        "---\ntitle: Own permalink\npermalink: /custom/:title/\ncategory: Single\nlast_modified_at: 2020-01-01\n---\nx\n"
    ),
    "_posts/2021-09-09-same-name.md": "---\ntitle: Same name, other day\n---\nx\n",
    "_posts/2021-09-10-same-name.md": "---\ntitle: Same name, next day\n---\ny\n",
    "news/_posts/2020-06-07-in-news.markdown": (
        "---\ntitle: In news\nslug: Renamed Slug\n---\nx {% include note.html %} {% assign x = 1 %}\n"
    ),
    "_posts/notes.md": "---\ntitle: Not dated, not a post\n---\nx\n",
    "_includes/note.html": "<b>note</b>\n",
    "_drafts/a-draft.md": "---\ntitle: Draft\n---\nd\n",
    "about.md": "---\ntitle: About\n---\nA page, not a post.\n",
}


def test_jekyll_publishes_the_same_posts_as_feedsvc(tmp_path: Path) -> None:
    expected, got, output = published("jekyll", tmp_path, JEKYLL_SITE)
    assert got == expected
    assert len(expected) == 6
    assert "unknown Liquid tag {% assign %}: removed" in output



# --- Pelican ----------------------------------------------------------------------------------------------------

PELICAN_SITE = {
    "pelicanconf.py": (
        "AUTHOR = 'Ana'\nSITENAME = 'Pelican site'\nSITEURL = 'https://example.net/blog'\nPATH = 'content'\n"
        "TIMEZONE = 'Asia/Jakarta'\nDEFAULT_LANG = 'en'\nFEED_ALL_ATOM = 'feeds/all.atom.xml'\n"
        "CATEGORY_FEED_ATOM = None\nAUTHOR_FEED_ATOM = None\nAUTHOR_FEED_RSS = None\n"
        "ARTICLE_URL = '{date:%Y}/{date:%m}/{slug}/'\nARTICLE_SAVE_AS = '{date:%Y}/{date:%m}/{slug}/index.html'\n"
        "WITH_FUTURE_DATES = False\nDEFAULT_PAGINATION = False\n"
    ),
    "content/first.md": (
        "Title: My first post\nDate: 2010-12-03 10:20\nModified: 2010-12-05 19:30\nCategory: Python\n"
        "Tags: pelican, publishing\nSlug: my-super-post\nAuthors: Alexis Metaireau, Conan Doyle\n"
        "Summary: Short version for index and feeds\n\n"
        "The content. See [other]({filename}/python/2012-01-02-second.md).\n"
    ),
    # No Date: the one in the file name; no Category: the folder's.
    "content/python/2012-01-02-second.md": (
        "Title: Second, dated by file name\nTags: python\n\nBody, [back]({filename}../first.md#top).\n"
    ),
    # Pelican's slug drops what is not a word, a space or a hyphen: "tabsspaces", "debates".
    "content/punctuation.md": "Title: Tabs/spaces: a (long) debate's end\nDate: 2014-05-06 07:08\n\nx\n",
    "content/draft.md": "Title: Draft one\nDate: 2011-01-01\nStatus: draft\n\nd\n",
    "content/hidden.md": "Title: Hidden one\nDate: 2011-01-02\nStatus: hidden\n\nh\n",
    "content/future.md": "Title: Future\nDate: 2099-01-01\n\nf\n",
    "content/nodate.md": "Title: No date\n\nn\n",
    "content/yaml-style.md": "---\nTitle: Front matter style\nDate: 2013-04-05 6:07\n---\n\ny\n",
    "content/pages/about.md": "Title: About\nDate: 2011-01-01\n\npage\n",
}


def test_pelican_publishes_the_same_posts_as_feedsvc(tmp_path: Path) -> None:
    expected, got, output = published("pelican", tmp_path, PELICAN_SITE)
    assert got == expected
    assert len(expected) == 4
    assert "no Date, and none in the file name" in output
    assert "no such article" not in output



# --- Eleventy ---------------------------------------------------------------------------------------------------

ELEVENTY_SITE = {
    "package.json": '{"type": "module"}\n',
    "eleventy.config.js": (
        'import { feedPlugin } from "@11ty/eleventy-plugin-rss";\n'
        "export default function (eleventyConfig) {\n"
        "  eleventyConfig.addPlugin(feedPlugin, {\n"
        '    type: "atom", outputPath: "/feed.xml", collection: { name: "posts", limit: 0 },\n'
        '    metadata: { language: "en", title: "Eleventy site", base: "https://example.io/", author: { name: "Ana" } },\n'
        "  });\n}\n"
        'export const config = { dir: { input: "content", output: "_site" } };\n'
    ),
    # The folder's data file puts its templates in the posts collection.
    "content/blog/blog.11tydata.json": '{"tags": ["posts"]}\n',
    "content/blog/2018-01-01-dated-name.md": "---\ntitle: Dated by name\n---\nx\n",
    "content/blog/first.md": "---\ntitle: First\ndate: 2021-10-01 8:30:00+00:00\ntags: [news, C#]\n---\n{{ title }}\n",
    "content/blog/naive.md": "---\ntitle: Naive date\ndate: 2020-05-06\n---\ny\n",
    "content/blog/custom.md": (
        '---\ntitle: Custom permalink\ndate: 2019-05-06T10:00:00+02:00\npermalink: "/elsewhere/{{ page.fileSlug }}/"\n---\ny\n'
    ),
    "content/blog/excluded.md": "---\ntitle: Excluded\ndate: 2019-05-07\neleventyExcludeFromCollections: true\n---\ny\n",
    "content/blog/bundle/index.md": "---\ntitle: Index in folder\ndate: 2019-05-09\n---\ny\n",
    # A file named as its folder is the folder's page, like index.md.
    "content/blog/named/named.md": "---\ntitle: Named as its folder\ndate: 2019-05-10\n---\ny\n",
    # JavaScript front matter: the values it declares.
    "content/blog/scripted.md": (
        "---js\nconst title = 'Scripted front matter';\nconst date = \"2016-07-08\";\n"
        "const tags = [\"posts\", `news`];\nfunction shout(text) { return text.toUpperCase(); }\n---\nz\n"
    ),
    "content/nowrite.md": "---\ntitle: No output\ndate: 2019-05-08\npermalink: false\ntags: posts-not\n---\ny\n",
    "content/about.md": "---\ntitle: About\ndate: 2019-05-09\n---\nA page.\n",
    "content/tagged.md": "---\ntitle: Tagged post outside blog\ndate: 2017-03-04\ntags: posts\n---\nz\n",
}


def test_eleventy_publishes_the_same_posts_as_feedsvc(tmp_path: Path) -> None:
    # The config names no site URL feedsvc can read (it is JavaScript): the one of its feed plugin's metadata.
    expected, got, _ = published("eleventy", tmp_path, ELEVENTY_SITE, url="https://example.io")
    assert got == expected
    assert len(expected) == 8
