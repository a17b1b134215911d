"""The second edition's shape, for every lecture from 04 on (04, 04b, 05, …): predict-then-run
questions with hidden answers, self-study exercises, references, and no measured number typed
into the prose (the code that measures it prints it, so the text cannot go stale)."""
import re
from pathlib import Path

import nbformat
import pytest

from xaicourse import course

ROOT = Path(__file__).resolve().parents[1]
SECOND_EDITION = [p for p in course.lecture_notebooks(ROOT) if p.name[:2] >= "04"]

# a measured-looking number: ≥ 3 decimals (0.989), scientific notation (2e-15, 1.5e-3) or a
# percentage with decimals (27.6 %). Settings stay writable: 0.25, 50 steps, 15 %.
MEASURED = re.compile(r"(?<![\w.])(\d+\.\d{3,}|\d+(\.\d+)?[eE][-+]?\d+|\d+\.\d+\s?%)(?![\w.])")


def prose(md: str) -> str:
    """Markdown without maths, code spans, links and URLs (numbers there are not claims)."""
    md = re.sub(r"\$\$.*?\$\$", " ", md, flags=re.S)
    md = re.sub(r"\$[^$\n]+\$", " ", md)
    md = re.sub(r"`[^`\n]+`", " ", md)
    md = re.sub(r"https?://\S+|arXiv:\s*\S+", " ", md)
    return md


def measured_numbers(nb) -> list[str]:
    found = []
    for c in nb.cells:
        if c.cell_type != "markdown":
            continue
        body = c.source.split("## References")[0]
        found += [m.group(0) for m in MEASURED.finditer(prose(body))]
    return found


def test_detector():
    assert measured_numbers(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "r = 0.989 and 27.6 % and 2e-15; fine: $r = 0.989$, `1.234`, ε = 0.25, 15 %, https://x/1703.01365")])) \
        == ["0.989", "27.6 %", "2e-15"]


def test_second_edition_covers_the_split_lecture():
    names = [p.stem for p in SECOND_EDITION]
    assert names[:2] == ["04_integrated_gradients", "04b_propagation_and_shapley"], names
    assert len(names) == 7


@pytest.mark.parametrize("path", SECOND_EDITION, ids=lambda p: p.stem)
def test_lecture_has_the_second_edition_shape(path):
    nb = nbformat.read(path, as_version=4)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    questions = len(re.findall(r"<details>\s*<summary>", md))
    assert questions >= 3, f"{path.name}: {questions} predict-then-run questions with a hidden answer (want ≥ 3)"
    assert md.count("**Predict, then run.**") >= 3, path.name
    assert re.search(r"^## References\s*$", md, flags=re.M), f"{path.name}: no '## References' section"
    refs = md.split("## References", 1)[1]
    assert len(re.findall(r"^\* ", refs, flags=re.M)) >= 2, f"{path.name}: fewer than two references"
    assert re.search(r"^## Exercises for self-study", md, flags=re.M), f"{path.name}: no self-study exercises"
    typed = measured_numbers(nb)
    assert typed == [], f"{path.name}: numbers typed into the prose (print them from the code): {typed}"
