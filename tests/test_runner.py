"""The build's notebook runner never waits for ever (issue #27): a lost reply is recovered from the
kernel's broadcast, an overrunning notebook is stopped at its deadline with its kernel, and a
failing cell is named."""
import os
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from xaicourse.runner import execute_notebook

# Patches the kernel so that the execute_reply of the *next* cell is never sent: the client then
# waits for a reply that will not come, the way lecture 09's last cell hung under load.
DROP_NEXT_REPLY = '''
k = get_ipython().kernel
_orig_send = k.session.send
_n = {"replies": 0}
def _send(stream, msg_or_type, *a, **kw):
    kind = msg_or_type if isinstance(msg_or_type, str) else msg_or_type.get("header", {}).get("msg_type")
    if kind == "execute_reply":
        _n["replies"] += 1
        if _n["replies"] == 2:      # this cell's own reply is the first; drop the next one
            return None
    return _orig_send(stream, msg_or_type, *a, **kw)
k.session.send = _send
'''


def _write(tmp_path, *sources):
    nb = new_notebook(cells=[new_markdown_cell("# test")] + [new_code_cell(s) for s in sources])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_dropped_reply_is_recovered_within_the_grace(tmp_path):
    path = _write(tmp_path, DROP_NEXT_REPLY, "x = 42\nprint('x is', x)\nx + 1", "print('after', x * 2)")
    lines = []
    t0 = time.time()
    r = execute_notebook(path, timeout=600, idle_grace=10, log=lines.append)
    took = time.time() - t0
    assert r.ok, r.error
    assert r.recovered == [2]
    assert took < 60, f"recovery took {took:.0f} s"      # 10 s grace + kernel start, never the 600 s timeout
    outs = r.nb.cells[2].outputs
    assert [o.get("text") for o in outs if o.output_type == "stream"] == ["x is 42\n"]
    assert [o.data["text/plain"] for o in outs if o.output_type == "execute_result"] == ["43"]
    assert r.nb.cells[3].outputs[0].text == "after 84\n"      # the run went on with the same kernel
    said = [line for line in lines if "reply never arrived" in line]
    assert len(said) == 1, lines
    # the diagnosis printed with it: the kernel dropped the reply, so nothing sat unread, and the
    # client was waiting for the shell reply (nbclient's task_poll_for_reply)
    assert "waiting for its shell reply; a reply was not waiting unread" in said[0], said[0]


def test_the_deadline_stops_the_notebook_and_its_kernel(tmp_path):
    pid_file = tmp_path / "kernel.pid"
    path = _write(tmp_path, f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))",
                  "time.sleep(10_000)")
    t0 = time.time()
    r = execute_notebook(path, timeout=5_000, deadline=15)
    assert not r.ok
    assert time.time() - t0 < 60
    assert "deadline" in r.error and "cell 2" in r.error and "nb.ipynb" in r.error
    pid = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the kernel {pid} outlived the notebook's deadline")


def test_a_failing_cell_is_named(tmp_path):
    path = _write(tmp_path, "a = 1", "raise ValueError('broken on purpose')", "b = 2")
    r = execute_notebook(path, quick=True)
    assert not r.ok
    assert "cell 2" in r.error and "broken on purpose" in r.error


def test_what_the_kernel_logs_as_an_error_reaches_the_build_log(tmp_path):
    path = _write(tmp_path, "import sys\nprint('[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel', "
                            "file=sys.__stderr__, flush=True)", "1 + 1")
    lines = []
    r = execute_notebook(path, timeout=120, log=lines.append)
    assert r.ok, r.error
    said = [line for line in lines if "the kernel logged" in line]
    assert said == ["[build]   nb.ipynb: the kernel logged: [IPKernelApp] ERROR | KeyboardInterrupt caught in kernel"], lines


@pytest.mark.parametrize("only, picked", [
    ("04", ["04_integrated_gradients.ipynb"]),                  # a number picks exactly that lecture
    ("4", ["04_integrated_gradients.ipynb"]),
    ("04b", ["04b_propagation_and_shapley.ipynb"]),
    ("05,09", ["05_influence_functions.ipynb", "09_concepts_and_robustness.ipynb"]),
    ("tsne", ["02_tsne.ipynb"]),                                 # other text: the names containing it
    ("integrated", ["04_integrated_gradients.ipynb"]),
    ("nothing-matches", []),
])
def test_only_picks_lectures_precisely(only, picked):
    from xaicourse import course

    names = [p.name for p in course.lecture_notebooks(course.find_root())]
    assert [n for n in names if course.matches_only(only, n)] == picked
