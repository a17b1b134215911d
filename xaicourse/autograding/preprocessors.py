"""nbgrader preprocessors the grader configures (``NBGRADER_CONFIG`` names them by their import path
``xaicourse.autograding.…``, so they stay importable from the package)."""
from __future__ import annotations


NBGRADER_CONFIG = '''c = get_config()
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
from nbgrader.preprocessors import (Execute, IgnorePattern, LimitOutput, SaveAutoGrades, AssignLatePenalties,
                                    CheckCellMetadata, GetGrades, ClearHiddenTests)
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from xaicourse.autograding import StderrAsStdout, HideHiddenTestCode
c.Autograde.autograde_preprocessors = [Execute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       StderrAsStdout, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTestCode, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
c.LimitOutput.max_lines = 2000
c.LimitOutput.max_length = 20000
'''


class _LazyBase:
    """nbgrader is imported only when the preprocessors are used (inside nbgrader itself)."""


try:  # the classes must be importable by name from nbgrader's config
    from nbgrader.preprocessors import NbGraderPreprocessor as _Base
except Exception:  # pragma: no cover - nbgrader is a dependency
    _Base = _LazyBase


def _is_test_cell(cell) -> bool:
    md = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and md.get("grade", False) and not md.get("solution", False)


class StderrAsStdout(_Base):
    """A warning printed on stderr by a passing test is not a failure: nbgrader scores any
    stderr output of a test cell as 0, so stderr streams of test cells become stdout."""

    def preprocess_cell(self, cell, resources, index):
        if _is_test_cell(cell):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream" and out.get("name") == "stderr":
                    out["name"] = "stdout"
        return cell, resources


class HideHiddenTestCode(_Base):
    """Feedback shows each hidden test's result (error name and message) but not its code: the
    traceback, which quotes the failing line, is cut to its last line."""

    def preprocess_cell(self, cell, resources, index):
        if _is_test_cell(cell):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
        return cell, resources
