"""The student's feedback page (no script, no network: text, images, MathML)."""
from __future__ import annotations

import re

import nbformat

from .template import Template


_SAFE_MIME = ("text/plain", "image/png", "image/jpeg")


_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)


_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\$)")


def _mathml(markdown: str) -> str:
    """``$…$`` and ``$$…$$`` as MathML, which browsers render without a script or a network."""
    from latex2mathml.converter import convert

    def sub(display):
        def f(m):
            try:
                return convert(m.group(1).strip(), display="block" if display else "inline")
            except Exception:  # a formula latex2mathml cannot parse stays as source
                return m.group(0)
        return f
    return _INLINE_MATH.sub(sub(False), _DISPLAY_MATH.sub(sub(True), markdown))


def feedback_html(nb, row: dict, template: Template) -> str:
    """The student's feedback page: their notebook as it ran, each task's result, the total. Built
    here from data with a fixed in-memory nbconvert configuration (no config file is read). It
    needs no script and no network: rich outputs are reduced to text and images (the student's
    HTML could carry scripts, and the instructor opens the page too), maths is MathML."""
    import copy
    import html

    from nbconvert import HTMLExporter
    from traitlets.config import Config

    page = copy.deepcopy(nb)
    for c in page.cells:
        if c.cell_type == "markdown":
            c.source = _mathml(c.source)
        for o in c.get("outputs", []):
            data = o.get("data")
            if data is not None and "application/vnd.jupyter.widget-view+json" in data:
                o["data"] = {"text/plain": "(an interactive widget: run the notebook to use it)"}
            elif data is not None:
                kept = {k: v for k, v in data.items() if k in _SAFE_MIME}
                o["data"] = kept or {"text/plain": "(a rich output, not shown in feedback)"}
    head = nbformat.v4.new_markdown_cell(
        f"**Feedback · {html.escape(template.exercise)} · {html.escape(row['student'])}**: "
        f"{float(row['score']):g} / {float(row['max_score']):g} points\n\n"
        + "\n".join(f"* `{html.escape(t)}`" for t in row["tasks"].split("; ") if t))
    page.cells.insert(0, head)
    exporter = HTMLExporter(config=Config())
    body, _ = exporter.from_notebook_node(page)
    return re.sub(r"<script\b.*?</script>", "", body, flags=re.S | re.I)
