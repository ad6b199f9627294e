"""The HTML text reader gives what BeautifulSoup with lxml gives Open WebUI's HTML loader
(`get_text()` and `str(title.string)`), character for character, without its tree."""

from __future__ import annotations

import pytest
from bs4 import BeautifulSoup

from pgvector_migration.pipeline.html_text import html_text
from pgvector_migration.sample_data import DOCUMENTS_DIR
from pgvector_migration_tests.fresh_interpreter import last_line_printed


def soup_text(markup: str) -> tuple[str, str]:
    soup = BeautifulSoup(markup, "lxml")
    return soup.get_text(), str(soup.title.string) if soup.title else ""


PAGES = {
    "plain": "<html><head><title>A page</title></head><body><p>One</p><p>Two</p></body></html>",
    "no title": "<p>text only</p>",
    "fragment": "just words, no markup",
    "whitespace runs": "<div>\n  <p>a</p>\n\n  <p>b</p> <span> </span>\t<b>c</b></div>",
    "pre and textarea": "<pre>\n   keep   \n</pre><textarea>  \n </textarea><p>  \n </p>",
    "nested pre": "<pre><b>  </b><pre> \n </pre>  </pre>x",
    "script style template": (
        "<head><style>p {color: red}</style><script>var a = '<p>';</script></head>"
        "<body><template><p>hidden</p> <b>also</b></template><p>shown</p>"
        "<noscript>fallback</noscript></body>"
    ),
    "ruby": "<ruby>漢<rp>(</rp><rt>kan</rt><rp>)</rp>字</ruby>",
    "comments and pi": "<!DOCTYPE html><!-- note --><?php echo 1; ?><p>a<!-- b -->c</p>",
    "entities": "<p>&amp; &lt;tag&gt; &nbsp;&eacute; &#x41;&#66; &bogus;</p>",
    "unbalanced": "<div><p>one<div>two</p>three</span></div>four<li>five<li>six",
    "stray end tags": "</b>a</p></html>b<p>c",
    "title with tag": "<title>A <b>bold</b> title</title><p>x</p>",
    "title with one tag": "<title><b>bold</b></title>",
    "empty title": "<title></title><p>x</p>",
    "whitespace title": "<title>\n  \n</title>",
    "comment title": "<title><!-- c --></title>",
    "two titles": "<title>first</title><body><title>second</title></body>",
    "title in svg": "<body><svg><title>shape</title></svg><title>later</title></body>",
    "cdata": "<p><![CDATA[inside]]> after</p>",
    "xml prolog": '<?xml version="1.0"?><html><body><p>x</p></body></html>',
    "bom": "\ufeff<p>after a byte order mark</p>",
    "control characters": "<p>a\x0bb\x0cc\rd</p>",
    "text after html": "<html><body><p>a</p></body></html>\n<p>b</p>tail",
    "table": "<table><tr><td>1</td><td>2</td></tr>\n<tr><td>3</td></tr></table>",
    "select": "<select><option>one</option>\n<option>two</option></select>",
    "empty": "",
    "one space": " ",
    "nul": "\x00",
    "lone bracket": "<",
    "only a byte order mark": "\ufeff",
    "frameset": "<frameset><frame src='a'><noframes>no frames</noframes></frameset>",
}


@pytest.mark.parametrize("name", sorted(PAGES))
def test_text_and_title_are_beautiful_soups(name):
    assert html_text(PAGES[name]) == soup_text(PAGES[name])


def test_the_sample_pages_read_the_same():
    for path in [DOCUMENTS_DIR / "walden.html"]:
        markup = path.read_text(encoding="utf-8")
        assert html_text(markup) == soup_text(markup), path.name


def test_a_large_page_is_read_without_its_tree():
    """A 12 MB page: BeautifulSoup's tree needs hundreds of MiB; the reader needs about the
    page and its text."""
    script = (
        "import resource\n"
        "from pgvector_migration.pipeline.html_text import html_text\n"
        "row = '<tr><td class=\"c\">cell <b>bold</b> &amp; more</td><td>x</td></tr>\\n'\n"
        "markup = '<title>t</title><body><table>' + row * 150_000 + '</table></body>'\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "text, title = html_text(markup)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "assert title == 't' and text.count('cell bold & more') == 150_000\n"
        "print((after - before) // 1024)\n"
    )
    grew_mib = int(last_line_printed(script))
    assert grew_mib < 80, f"reading a 12 MB page grew the process by {grew_mib} MiB"
