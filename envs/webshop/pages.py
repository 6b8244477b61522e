"""WebShop's pages as lists of segments, rendered to WebShop's `[SEP]` text observation or to HTML."""

from __future__ import annotations

import html

# A page is a list of (kind, text) segments:
#   "text"     plain text;
#   "click"    a button or product link (`click[<text lower-cased>]`);
#   "option"   an option value (`click[<value>]`); "selected" the same, currently chosen;
#   "heading"  an option group's name or the product title;
#   "instruction"  the task instruction;
#   "search"   the search box.
Segment = tuple[str, str]

SEP = " [SEP] "


def to_text(segments: list[Segment]) -> str:
    """WebShop's simple text mode (visible texts joined by ` [SEP] `), clickables in brackets."""
    parts = []
    for kind, text in segments:
        if kind in ("click", "option"):
            parts.append(f"[{text}]")
        elif kind == "selected":
            parts.append(f"[{text}] (selected)")
        elif kind == "search":
            parts.append("Search")
        else:
            parts.append(text)
    return SEP.join(parts)


_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
    "button{margin:.2em;padding:.3em .8em;cursor:pointer}button.selected{background:#2a7;color:#fff}"
    ".instruction{background:#eef;padding:.6em;border-radius:.4em}.note{color:#a33}"
)


def to_html(segments: list[Segment], title: str = "WebShop", note: str = "") -> str:
    """The same page as an HTML document: every clickable is a submit button whose value is its
    action (`click[...]`); the search box submits `search`. Forms post to the page's own URL."""
    body = []
    for kind, text in segments:
        escaped = html.escape(text)
        if kind in ("click", "option", "selected"):
            action = html.escape(f"click[{text.lower()}]", quote=True)
            css = ' class="selected"' if kind == "selected" else ""
            body.append(f'<button name="action" value="{action}"{css}>{escaped}</button>')
        elif kind == "heading":
            body.append(f"<h3>{escaped}</h3>")
        elif kind == "search":
            body.append('<input name="search" size="60" autofocus> <button>Search</button>')
        elif kind == "instruction":
            body.append(f'<p class="instruction">{escaped}</p>')
        else:
            body.append(f"<p>{escaped}</p>")
    note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{note_html}<form method='post'>{''.join(body)}</form>"
        "</body></html>"
    )
