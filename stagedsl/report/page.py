"""The HTML page: sections in one self-contained file — inline CSS, no script, no network.

A page is a title and a list of `Section` s; each section is a heading and an HTML body
made with the helpers here (`table`, `figure`, `escape`), so every value is escaped once.
Figures are PNG files beside the page, referenced by relative path. The style sheet
prints well: black on white, tables that do not split rows, figures kept whole.
"""

from __future__ import annotations

import html
from typing import Any, Iterable, Optional, Sequence

import attrs

STYLE = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #111; background: #fff;
       max-width: 1240px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 3px; border-bottom: 1px solid #ccc; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.lead { margin: 2px 0 10px; color: #333; }
nav { margin: 8px 0 4px; font-size: 13px; }
nav a { margin-right: 14px; color: #1a4f8b; text-decoration: none; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.facts th { width: 170px; }
code { font: 12.5px ui-monospace, "DejaVu Sans Mono", monospace; background: #f4f4f4; padding: 0 3px; border-radius: 3px; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 12.5px; color: #333; margin-top: 4px; max-width: 1100px; }
.badge { display: inline-block; white-space: nowrap; padding: 1px 8px; border-radius: 10px; font-size: 12.5px; font-weight: 600; border: 1px solid; }
.ok { color: #1d6b2a; border-color: #1d6b2a; } .bad { color: #a31515; border-color: #a31515; }
.warn { color: #8a5a00; border-color: #8a5a00; } .muted { color: #666; }
ol.hints li, ul.hints li { margin-bottom: 6px; } li.warning::marker { color: #a31515; font-weight: 600; }
.passed { color: #1d6b2a; font-weight: 600; } .failed { color: #a31515; font-weight: 600; }
.note { color: #555; font-size: 13px; }
.best { color: #7a5c00; font-weight: 700; white-space: nowrap; } .name { white-space: nowrap; }
h2 + p.lead { margin-top: 0; }
@page { margin: 12mm; }
@media print {
  nav { display: none; }
  body { max-width: none; padding: 0; font-size: 10pt; }
  table { font-size: 7.5pt; width: 100%; } th, td { padding: 2px 3px; overflow-wrap: break-word; }
  .badge { font-size: 7pt; padding: 0 4px; }
  code { font-size: 7pt; background: none; padding: 0; } table.facts th { width: 25%; }
  h2 { break-after: avoid; }
  figure, tr, li { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


@attrs.frozen
class Section:
    """One part of the page: an anchor id, a heading and its (already escaped) HTML body."""

    id: str
    title: str
    body: str
    level: int = 2


def escape(value: Any) -> str:
    """Text for HTML (None as an em dash)."""
    return "—" if value is None else html.escape(str(value), quote=True)


def code(value: Any) -> str:
    """Inline code."""
    return f"<code>{escape(value)}</code>"


def badge(text: str, kind: str) -> str:
    """A small coloured label: kind is ok | bad | warn | muted."""
    return f'<span class="badge {kind}">{escape(text)}</span>'


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = (), klass: str = "",
          raw: bool = False) -> str:
    """An HTML table; cells are escaped unless `raw` (then they are HTML made by these helpers)."""
    cells = lambda row: "".join(
        f'<td{" class=num" if i in numeric else ""}>{cell if raw else escape(cell)}</td>' for i, cell in enumerate(row))
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr>{cells(row)}</tr>" for row in rows)
    return f'<table{f" class={klass}" if klass else ""}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def facts(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table of names and (HTML) values."""
    body = "".join(f"<tr><th>{escape(name)}</th><td>{value}</td></tr>" for name, value in rows)
    return f'<table class="facts"><tbody>{body}</tbody></table>'


def figure(file: str, title: str, caption: str) -> str:
    """A figure from a PNG beside the page."""
    return (f'<figure><img src="{escape(file)}" alt="{escape(title)}" loading="eager">'
            f"<figcaption><b>{escape(title)}.</b> {escape(caption)}</figcaption></figure>")


def paragraph(text: str, klass: Optional[str] = None) -> str:
    """A paragraph of escaped text."""
    return f'<p{f" class={klass}" if klass else ""}>{escape(text)}</p>'


def render_page(title: str, lead: str, sections: Sequence[Section], *, footer: str = "") -> str:
    """The whole page: header, a table of contents, every section."""
    toc = "".join(f'<a href="#{escape(s.id)}">{escape(s.title)}</a>' for s in sections if s.level == 2)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{escape(title)}</h1><p class=lead>{lead}</p><nav>{toc}</nav></header>",
        "<main>",
    ]
    for section in sections:
        tag = f"h{section.level}"
        parts.append(f'<section id="{escape(section.id)}"><{tag}>{escape(section.title)}</{tag}>{section.body}</section>')
    parts.append(f"</main><footer class=note><p>{footer}</p></footer></body></html>")
    return "\n".join(parts) + "\n"
