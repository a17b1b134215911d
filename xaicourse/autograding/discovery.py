"""What there is to grade: submissions → entries, the notebook of each, metadata repair."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Entry:
    """One row to grade: a student's exercise folder (or why there is nothing to grade)."""
    student: str
    exercise: str
    folder: Path | None = None
    problem: str = ""


def discover(submissions: Path, known: list[str], roster: list[str] | None = None) -> list[Entry]:
    """Every entry of SUBMISSIONS becomes at least one Entry; roster names with nothing get one too."""
    entries: list[Entry] = []
    seen = set()
    try:
        children = sorted(submissions.iterdir(), key=lambda p: p.name)
    except OSError as err:
        raise ValueError(f"cannot read the submissions folder {submissions}: {err}") from err
    for child in children:
        student = child.name
        if child.name.startswith("."):
            continue
        seen.add(student)
        try:
            if child.is_symlink() and not child.exists():
                entries.append(Entry(student, "", problem="broken symlink, not a folder"))
                continue
            if not child.is_dir():
                hint = " (unpack archives first)" if child.suffix in (".zip", ".tar", ".gz", ".tgz") else ""
                entries.append(Entry(student, "", problem=f"not a folder: {child.name}{hint}"))
                continue
            ex_dirs = sorted((p for p in child.iterdir() if p.is_dir() and not p.name.startswith(".")),
                             key=lambda p: p.name)
        except OSError as err:
            entries.append(Entry(student, "", problem=f"unreadable: {type(err).__name__}: {err}"))
            continue
        if not ex_dirs:
            entries.append(Entry(student, "", problem="no exercise folder in the submission"))
            continue
        for ex_dir in ex_dirs:
            ex = ex_dir.name
            if ex not in known:
                guess = [k for k in known if k.split("_")[0] == ex.split("_")[0]] if ex[:2].isdigit() else []  # "04b" is not "04"
                if len(guess) == 1:
                    entries.append(Entry(student, guess[0], ex_dir, problem=f"folder {ex!r} graded as {guess[0]}"))
                else:
                    entries.append(Entry(student, ex, problem=f"unknown exercise {ex!r} (known: {', '.join(known)})"))
                continue
            entries.append(Entry(student, ex, ex_dir))
    for name in roster or []:
        if name not in seen:
            entries.append(Entry(name, "", problem="missing: no submission"))
    return entries


def _pick_notebook(folder: Path, exercise: str) -> tuple[Path | None, str]:
    """The submitted notebook: the expected name, else the only notebook under any name."""
    try:
        nbs = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and p.is_file())
    except OSError as err:
        return None, f"unreadable submission ({type(err).__name__}: {err})"
    expected = [p for p in nbs if p.name == f"{exercise}.ipynb"]
    if expected:
        return expected[0], ""
    if len(nbs) == 1:
        return nbs[0], f"notebook {nbs[0].name!r} accepted as {exercise}.ipynb"
    if not nbs:
        return None, "no notebook (.ipynb) in the submission"
    return None, f"{len(nbs)} notebooks and none named {exercise}.ipynb: cannot tell which to grade"


def _repair(sub, release) -> list[str]:
    """Put back nbgrader metadata an editor stripped or renamed, matching cells to the release.

    Cells are matched in order: a release cell that is locked matches the submission cell with the
    same source; answer cells match the cells between them. Returns what was repaired.
    """
    notes = []
    rel_ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in release.cells]
    sub_ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in sub.cells]
    wanted = {i for i in rel_ids if i}
    have = {i for i in sub_ids if i}
    if wanted <= have and len(set(sub_ids) - {None}) == len([i for i in sub_ids if i]):
        return notes
    if len(sub.cells) == len(release.cells):
        pairs = list(zip(sub.cells, release.cells))
    else:  # align on identical (locked) sources
        pairs, j = [], 0
        for rc in release.cells:
            while j < len(sub.cells) and sub.cells[j].source.strip() != rc.source.strip() \
                    and not rc.metadata.get("nbgrader", {}).get("solution"):
                j += 1
            if j < len(sub.cells):
                pairs.append((sub.cells[j], rc))
                j += 1
    fixed = 0
    for sc, rc in pairs:
        rmd = rc.metadata.get("nbgrader")
        if rmd and sc.metadata.get("nbgrader", {}).get("grade_id") != rmd.get("grade_id"):
            sc.metadata["nbgrader"] = json.loads(json.dumps(rmd))
            fixed += 1
    if fixed:
        notes.append(f"nbgrader metadata of {fixed} cell(s) restored from the release")
    ids = [c.get("id") for c in sub.cells]
    if len(set(ids)) != len(ids):
        for k, c in enumerate(sub.cells):
            c["id"] = f"cell-{k}"
        notes.append("duplicated cell ids renumbered")
    return notes
