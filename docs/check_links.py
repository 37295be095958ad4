"""Check every local link of the built HTML: files exist, anchors exist.

    python docs/check_links.py [docs/_build/html]

Parses every ``.html`` file for ``href`` and ``src`` attributes. A relative target must
exist on disk (relative to the page), and a ``#fragment`` must be an ``id`` (or ``name``)
in the target page. External ``http(s)`` links are listed, not fetched (the build is
offline). Exit status 1 if anything local is broken.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []  # (attribute, value)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if value is None:
                continue
            if key in ("id", "name") and tag != "meta":
                self.ids.add(value)
            if key in ("href", "src"):
                self.links.append((key, value))

    handle_startendtag = handle_starttag


def _parse(path: Path) -> _Collector:
    c = _Collector()
    c.feed(path.read_text(encoding="utf-8", errors="replace"))
    return c


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else Path(__file__).resolve().parent / "_build" / "html")
    # pages, not the theme's assets (_static holds Jinja macro files named *.html)
    pages = sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts)
    if not pages:
        print(f"no HTML under {root}", file=sys.stderr)
        return 1
    parsed = {p.resolve(): _parse(p) for p in pages}
    broken: list[str] = []
    external: dict[str, set[str]] = defaultdict(set)
    n_local = 0
    for page, c in parsed.items():
        for attr, url in c.links:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https"):
                external[url].add(str(page.relative_to(root.resolve())))
                continue
            if parts.scheme in ("mailto", "javascript", "data") or url.startswith("//"):
                continue
            target, frag = urldefrag(url)
            target = unquote(urlsplit(target).path)
            dest = page if not target else (page.parent / target).resolve()
            if dest.is_dir():
                dest = dest / "index.html"
            n_local += 1
            where = f"{page.relative_to(root.resolve())}: {attr}={url!r}"
            if not dest.exists():
                broken.append(f"{where} -> missing file")
                continue
            if frag and dest.suffix == ".html":
                ids = parsed[dest].ids if dest in parsed else _parse(dest).ids
                if unquote(frag) not in ids:
                    broken.append(f"{where} -> no anchor #{frag}")
    print(f"{len(pages)} pages, {n_local} local links checked, {len(broken)} broken")
    for b in broken:
        print("  BROKEN", b)
    if external:
        print(f"{len(external)} external links (not fetched):")
        for url in sorted(external):
            print(f"  {url}  ({len(external[url])} page(s))")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
