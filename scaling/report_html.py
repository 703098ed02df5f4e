"""HTML building blocks of the report: its inline CSS, escaping, tables, embedded figures, notes."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["CSS", "Cell", "Link", "esc", "figure", "link", "note", "table"]

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1180px;
       padding: 0 1em; color: #1b1b1b; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.meta { color: #666; }
.verdict { background: #f3f7fb; border-left: 4px solid #2a6db0; padding: 0.6em 1.2em; }
.verdict li { margin: 0.3em 0; }
.warn { background: #fff6e5; border-left: 4px solid #d08a00; padding: 0.5em 1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.55em; text-align: right; }
th { background: #f4f4f4; }
td.text, th.text { text-align: left; }
tr.failed td { background: #fde8e8; }
tr.diverged td { background: #fff3dc; }
.ok { color: #1a7f37; font-weight: bold; }
.bad { color: #c62828; font-weight: bold; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
p.look { font-weight: bold; margin: 0.4em 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
details { margin: 1em 0; }
summary { cursor: pointer; font-weight: bold; }
table.timing td { border: none; padding: 0.1em 0.4em; }
td.timebar { width: 60%; text-align: left; white-space: nowrap; }
td.timebar span { display: inline-block; height: 0.9em; }
span.train { background: #2a6db0; } span.eval { background: #e08a1e; }
span.other { background: #b8b8b8; }
"""


class Link(NamedTuple):
    """A table cell that links somewhere (a trial's MLflow run)."""

    text: str
    href: str


Cell = str | tuple[str, str] | Link  # plain text, (text, css class), or a link


def esc(value: Any) -> str:
    """`value` as text, safe inside an element or a quoted attribute."""
    return html.escape(str(value), quote=True)


def table(
    headers: Sequence[str],
    body: Sequence[Sequence[Cell]],
    *,
    row_classes: Sequence[str] | None = None,
    text_columns: int = 1,
) -> str:
    """An HTML table: the first `text_columns` columns left-aligned, the rest numeric."""

    def cell(tag: str, value: Cell, index: int) -> str:
        if isinstance(value, Link):
            text, cls = link(value.text, value.href), ""
        else:
            plain, cls = value if isinstance(value, tuple) else (value, "")
            text = esc(plain)
        classes = " ".join(c for c in ("text" if index < text_columns else "", cls) if c)
        attr = f' class="{classes}"' if classes else ""
        return f"<{tag}{attr}>{text}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(headers))
    lines = []
    for k, row in enumerate(body):
        cls = (row_classes or [""] * len(body))[k]
        attr = f' class="{cls}"' if cls else ""
        lines.append(f"<tr{attr}>" + "".join(cell("td", c, i) for i, c in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def figure(path: Path | None, alt: str, caption: str, *, look_at: str) -> str:
    """A PNG inlined as a data URI, so the page needs no file beside it, under a one-line
    `look_at` (what the reader should look at first) and the `caption` (how it is drawn)."""
    if path is None:
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><p class="look">Look at: {esc(look_at)}</p>'
        f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def link(text: str, href: str) -> str:
    """An anchor to `href` (escaped), showing `text`."""
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def note(text: str, cls: str = "warn") -> str:
    """A paragraph of `text` styled as a warning (or as `cls`)."""
    return f'<p class="{cls}">{esc(text)}</p>'
