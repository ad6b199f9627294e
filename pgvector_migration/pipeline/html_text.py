"""The text and title Open WebUI's HTML loader takes from a page, without building its tree.

Open WebUI 0.12.4 reads .html and .htm with langchain's `BSHTMLLoader`: `BeautifulSoup(text,
"lxml")`, then `soup.get_text()` as the text and `str(soup.title.string)` as the title.
BeautifulSoup keeps a Python object for every tag and string of the page: an 8 MB page needs
261 MiB while it is read, and the process that read it keeps most of that afterwards. Here the
parser BeautifulSoup drives (lxml's HTML parser, with its options) sends the same events to a
target that keeps only what those two calls return, by BeautifulSoup 4.14's rules for them:

- the character data between two events is one string; when it is nothing but ASCII whitespace
  and no <pre> or <textarea> is open, it becomes "\\n" if it holds a newline, else " ";
- the strings inside <script>, <style>, <template>, <rt> or <rp> (at any depth), comments,
  processing instructions and the doctype are not text (`get_text` keeps plain strings only);
- an end tag closes the open tags down to the nearest one of its name, and none when no open
  tag has it;
- the title is the first <title>'s `.string`: its only child's, through single children,
  else None (which the loader writes as "None"), and "" without a <title>.

Like BeautifulSoup, a text lxml refuses is parsed again as its UTF-8 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

ASCII_SPACES = "\x20\x0a\x09\x0c\x0d"
# BeautifulSoup's HTML string containers: their strings are Script, Stylesheet, TemplateString,
# RubyTextString or RubyParenthesisString objects, which get_text leaves out.
STRING_CONTAINER_TAGS = frozenset({"script", "style", "template", "rt", "rp"})
WHITESPACE_PRESERVING_TAGS = frozenset({"pre", "textarea"})


@dataclass
class _Node:
    """A tag inside the first <title>: its children, strings and tags, in order."""

    children: list[str | _Node] = field(default_factory=list)

    def string(self) -> str | None:
        if len(self.children) != 1:
            return None
        child = self.children[0]
        return child if isinstance(child, str) else child.string()


class _TextTarget:
    """lxml parser target that keeps the page's text and its first title's subtree."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.title: _Node | None = None
        self._data: list[str] = []
        # The open tags, innermost last, each with its node when it is in the first <title>.
        self._open: list[tuple[str, _Node | None]] = []
        self._containers = 0
        self._preserving = 0

    def start(self, tag: str, attrib: dict) -> None:
        self._flush(is_text=True)
        node = None
        if self._open and self._open[-1][1] is not None:
            node = _Node()
            self._open[-1][1].children.append(node)
        elif self.title is None and tag == "title":
            node = self.title = _Node()
        self._open.append((tag, node))
        self._containers += tag in STRING_CONTAINER_TAGS
        self._preserving += tag in WHITESPACE_PRESERVING_TAGS

    def end(self, tag: str) -> None:
        self._flush(is_text=True)
        names = [name for name, _ in self._open]
        if tag in names:
            for _ in range(len(names) - names[::-1].index(tag) - 1, len(names)):
                name, _ = self._open.pop()
                self._containers -= name in STRING_CONTAINER_TAGS
                self._preserving -= name in WHITESPACE_PRESERVING_TAGS

    def data(self, data: str) -> None:
        self._data.append(data)

    def comment(self, text: str) -> None:
        self._string_not_text(text)

    def pi(self, target: str, data: str) -> None:
        self._string_not_text(f"{target} {data}")

    def doctype(self, name: str, pubid: str, system: str) -> None:
        self._string_not_text(name or "")

    def close(self) -> None:
        self._flush(is_text=True)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def _string_not_text(self, value: str) -> None:
        self._flush(is_text=True)
        self._data.append(value)
        self._flush(is_text=False)

    def _flush(self, is_text: bool) -> None:
        if not self._data:
            return
        value = "".join(self._data)
        self._data = []
        if not self._preserving and not value.strip(ASCII_SPACES):
            value = "\n" if "\n" in value else " "
        if self._open and self._open[-1][1] is not None:
            self._open[-1][1].children.append(value)
        if is_text and not self._containers:
            self.pieces.append(value)


def html_text(markup: str) -> tuple[str, str]:
    """The page's `get_text()` and `str(title.string)` as BeautifulSoup with lxml gives them."""
    if markup[:1] == "\N{BYTE ORDER MARK}":
        markup = markup[1:]
    try:
        return _read(markup, None)
    except (UnicodeDecodeError, LookupError, etree.ParserError):
        # BeautifulSoup's second attempt when lxml refuses the text: its UTF-8 bytes.
        return _read(markup.encode("utf8"), "utf8")


def _read(source: str | bytes, encoding: str | None) -> tuple[str, str]:
    target = _TextTarget()
    parser = etree.HTMLParser(target=target, recover=True, huge_tree=False, encoding=encoding)
    parser.feed(source)
    parser.close()
    title = "" if target.title is None else str(target.title.string())
    return target.text, title
