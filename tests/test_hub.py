"""A real class on a real JupyterHub (127.0.0.1), driven in chromium.

The README's "Deployment for a real class → One machine" steps, for real, as root:

* the hub's environment: a venv of Debian's python3.11 at /opt/xaicourse (made when missing, and the
  package reinstalled when the checkout's differs), ``pip install <clone> jupyterhub
  jupyterhub-systemdspawner`` (a wheel, NOT ``-e``); formgrader and *Create Assignment* switched off
  for the whole environment; ``/etc/jupyter/nbgrader_config.py``; the exchange
  ``mkdir -p -m 1777 /srv/nbgrader/exchange``;
* real Linux users made by the test (``useradd -m``, ``chmod 700`` home, ``chpasswd``): an instructor
  and three students; the instructor's private copy of the repository (``~/xaicourse``, mode 0700:
  here a copy of the checkout instead of ``git clone``), the instructor's nbgrader config, formgrader
  switched on for the instructor alone;
* JupyterHub started with the shipped ``deploy/jupyterhub_config.py`` (via ``tests/hub/
  jupyterhub_config.py``, which only swaps SystemdSpawner for LocalProcessSpawner — no systemd in a
  container — and uses 127.0.0.1 with free ports). Authentication is the shipped one: PAM, the real
  users and their passwords.

Then, in chromium: the students log in; the instructor releases 00_introduction
(``xaicourse classroom release 00_introduction``, from the clone: the first release records it); each
student fetches it in the Assignments tab, answers (student01 the full solution, student02 nothing,
student03 a wrong second answer), saves, submits; the instructor collects, grades, grades again (the
grades must not change), releases the feedback; the students fetch it and open it; formgrader shows
the scores; ``xaicourse classroom export`` is typed into the instructor's JupyterLab terminal. Every
instructor command runs as the instructor (not root) from their home folder with the hub's
environment. From a student's account nothing holding a solution or a hidden check can be read.

Screenshots: build/test-artifacts/hub-*.png; phase times: hub-times.json; the hub's log: hub-log.txt.
"""
import csv
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "build" / "test-artifacts"
HUB = Path("/opt/xaicourse")                 # the shipped config's PATH names /opt/xaicourse/bin
EXCHANGE = Path("/srv/nbgrader/exchange")
ETC_CONFIG = Path("/etc/jupyter/nbgrader_config.py")
CHROMIUM = "/usr/bin/chromium"
EX = "00_introduction"
INSTRUCTOR = "instructor"
STUDENTS = {"student01": "full", "student02": "blank", "student03": "wrong"}   # names the shipped config allows
MARK = "xaicourse hub test"                   # the GECOS field of the users this test makes
CREATED = EXCHANGE / ".made-by-xaicourse-hub-test"
PLUMBING = ("_kernel_side", "request-", "xaicourse-grade-", "_xaicourse_progress")

# the README's steps (root, then the instructor): keep them identical to the README
ROOT_STEPS = [
    "jupyter server extension disable --sys-prefix nbgrader.server_extensions.formgrader",
    "jupyter labextension disable --level=sys_prefix @jupyter/nbgrader:formgrader @jupyter/nbgrader:create-assignment",
    "jupyter labextension unlock --level=sys_prefix @jupyter/nbgrader:formgrader @jupyter/nbgrader:create-assignment",
]
INSTRUCTOR_STEPS = (
    "mkdir -p ~/.jupyter && cp ~/xaicourse/deploy/nbgrader_config_instructor.py ~/.jupyter/nbgrader_config.py\n"
    "jupyter labextension enable --level=user @jupyter/nbgrader:formgrader @jupyter/nbgrader:create-assignment\n"
    "echo '{\"ServerApp\": {\"jpserver_extensions\": {\"nbgrader.server_extensions.formgrader\": true}}}'"
    " > ~/.jupyter/jupyter_server_config.json\n")


def _why_not() -> str | None:
    """Why this machine cannot run the hub test (None: it can)."""
    if os.name != "posix" or os.geteuid() != 0:
        return "the hub test creates Linux users and runs JupyterHub: run it as root (CI does)"
    for tool in ("useradd", "userdel", "chpasswd", "runuser"):
        if not shutil.which(tool):
            return f"no {tool}"
    node = shutil.which("node")
    if not node or not shutil.which("npm"):
        return "no node/npm: `apt-get install -y nodejs npm` (node >= 20), `npm i -g configurable-http-proxy`"
    major = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < 20:
        return f"node {major} is too old for configurable-http-proxy: node >= 20 is needed"
    if not shutil.which("configurable-http-proxy"):
        return "no configurable-http-proxy: `npm i -g configurable-http-proxy` (.ci/run does it as root)"
    if not Path(CHROMIUM).exists():
        return "no chromium: `apt-get install -y chromium`"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no playwright: pip install -e '.[test]'"
    if subprocess.run(["/usr/bin/python3.11", "-c", "import venv, ensurepip"], capture_output=True).returncode:
        return "no /usr/bin/python3.11 with venv: `apt-get install -y python3.11-venv`"
    for user in (INSTRUCTOR, *STUDENTS):
        entry = _passwd(user)
        if entry and entry[4] != MARK:
            return f"a user {user} exists on this machine (not made by this test): not touching it"
    if (EXCHANGE / "xaicourse").exists() and not CREATED.exists():
        return f"{EXCHANGE}/xaicourse exists (a real course?): not touching it"
    return None


def _passwd(user: str):
    import pwd
    try:
        return pwd.getpwnam(user)
    except KeyError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, timeout=600, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _spawner_environment() -> dict:
    """``c.Spawner.environment`` of the shipped config: what every user's server (and terminal) gets."""
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("jupyterhub_config.py", path=str(ROOT / "deploy")).load_config()
    return dict(cfg.Spawner.environment)


def _user_env(user: str) -> list[str]:
    env = {"HOME": f"/home/{user}", "USER": user, "LOGNAME": user, "SHELL": "/bin/bash", "LANG": "C.UTF-8",
           **_spawner_environment()}
    return ["env", "-i", *[f"{k}={v}" for k, v in env.items()]]


def _as(user: str, script: str, timeout=900, check=True) -> subprocess.CompletedProcess:
    """``script`` in bash as ``user`` (not root), from their home folder, with the hub's environment."""
    r = subprocess.run(["runuser", "-u", user, "--", *_user_env(user), "bash", "-c", f"cd ~ && {script}"],
                       capture_output=True, text=True, timeout=timeout, cwd="/")
    if check:
        assert r.returncode == 0, f"as {user}: {script} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _pids_of(user: str) -> list[int]:
    r = subprocess.run(["ps", "-u", user, "-o", "pid="], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def _remove_user(user: str) -> None:
    if not _passwd(user):
        return
    for pid in _pids_of(user):      # processes of the test's own users only, by id
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.5)
    subprocess.run(["userdel", "-r", user], capture_output=True)


def _shot(page, name: str) -> None:
    try:
        page.screenshot(path=str(ARTIFACTS / f"hub-{name}.png"))
    except Exception:
        pass


# ----------------------------------------------------------------------------- the hub's environment
CLONE_IGNORE = shutil.ignore_patterns(".venv", "build", ".git", "*.egg-info", "__pycache__", "*.pyc",
                                      ".pytest_cache", ".ipynb_checkpoints", "grades.csv")


def _package_differs() -> bool:
    """Does the hub's installed ``xaicourse`` differ from the checkout's (then it is reinstalled)?"""
    installed = HUB / "lib" / "python3.11" / "site-packages" / "xaicourse"
    src = ROOT / "xaicourse"
    for f in src.rglob("*"):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
            rel = f.relative_to(src)
            if (f.suffix == ".py" or rel.parts[0] == "site_static") and (
                    not (installed / rel).is_file() or (installed / rel).read_bytes() != f.read_bytes()):
                return True
    return False


def _hub_environment(tmp: Path, log) -> str:
    """/opt/xaicourse as the README makes it (kept between runs on a developer's machine)."""
    py = HUB / "bin" / "python"
    probe = [str(py), "-c", "import jupyterhub, nbgrader, systemdspawner, xaicourse"]
    what = "reused"
    if not py.exists() or subprocess.run(probe, capture_output=True).returncode:
        shutil.rmtree(HUB, ignore_errors=True)
        src = tmp / "xaicourse-src"              # a clone (pip builds its wheel there)
        shutil.copytree(ROOT, src, ignore=CLONE_IGNORE)
        _run(["/usr/bin/python3.11", "-m", "venv", str(HUB)])
        r = _run([str(HUB / "bin" / "pip"), "install", "-q", str(src), "jupyterhub", "jupyterhub-systemdspawner"],
                 timeout=3600)
        log.write(r.stdout + r.stderr)
        what = "created"
    elif _package_differs():
        src = tmp / "xaicourse-src"
        shutil.copytree(ROOT, src, ignore=CLONE_IGNORE)
        _run([str(HUB / "bin" / "pip"), "install", "-q", "--no-deps", "--force-reinstall", str(src)], timeout=1200)
        what = "package reinstalled"
    env = dict(os.environ, PATH=f"{HUB / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    for step in ROOT_STEPS:
        _run(["bash", "-c", step], env=env, timeout=300)
    return what


# ----------------------------------------------------------------------------- the machine
@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """Hub environment, users, configuration, exchange, the instructor's set-up; undone afterwards."""
    why = _why_not()
    if why:
        pytest.skip(why)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("hub-*"):
        old.unlink()
    tmp = tmp_path_factory.mktemp("hub")
    times = {}
    undo = []
    t0 = time.time()
    with open(ARTIFACTS / "hub-setup-log.txt", "w") as log:
        times["hub_env"] = time.time()
        times["hub_env_what"] = _hub_environment(tmp, log)
        times["hub_env"] = time.time() - times["hub_env"]
    try:
        t = time.time()
        # /etc/jupyter/nbgrader_config.py for everybody (restored afterwards)
        saved = ETC_CONFIG.read_bytes() if ETC_CONFIG.exists() else None
        made_etc = not ETC_CONFIG.parent.exists()

        def restore_etc():
            if saved is not None:
                ETC_CONFIG.write_bytes(saved)
            else:
                ETC_CONFIG.unlink(missing_ok=True)
                if made_etc:
                    shutil.rmtree(ETC_CONFIG.parent, ignore_errors=True)
        ETC_CONFIG.parent.mkdir(parents=True, exist_ok=True)
        undo.append(restore_etc)
        shutil.copy(ROOT / "deploy" / "nbgrader_config.py", ETC_CONFIG)
        # the exchange
        if CREATED.exists():                       # left by an interrupted run of this test
            shutil.rmtree(EXCHANGE)
        if not EXCHANGE.exists():
            made_srv = not EXCHANGE.parent.exists()
            _run(["mkdir", "-p", "-m", "1777", str(EXCHANGE)])
            CREATED.touch()
            undo.append(lambda: shutil.rmtree(EXCHANGE.parent if made_srv else EXCHANGE, ignore_errors=True))
        else:
            undo.append(lambda: shutil.rmtree(EXCHANGE / "xaicourse", ignore_errors=True))
        assert EXCHANGE.stat().st_mode & 0o7777 == 0o1777
        # the users (a leftover of an interrupted run of this test is removed first)
        passwords = {}
        for user in (INSTRUCTOR, *STUDENTS):
            _remove_user(user)
            _run(["useradd", "-m", "-s", "/bin/bash", "-c", MARK, user])
            undo.append(lambda user=user: _remove_user(user))
            _run(["chmod", "700", f"/home/{user}"])
            passwords[user] = secrets.token_urlsafe(12)
        _run(["chpasswd"], input="".join(f"{u}:{p}\n" for u, p in passwords.items()))
        # the instructor's private clone (README: git clone … ~/xaicourse && chmod 700 ~/xaicourse)
        clone = Path(f"/home/{INSTRUCTOR}/xaicourse")
        shutil.copytree(ROOT, clone, ignore=CLONE_IGNORE)
        _run(["chown", "-R", f"{INSTRUCTOR}:{INSTRUCTOR}", str(clone)])
        _as(INSTRUCTOR, "chmod 700 ~/xaicourse")
        _as(INSTRUCTOR, INSTRUCTOR_STEPS, timeout=300)
        times["machine"] = time.time() - t
        yield dict(tmp=tmp, passwords=passwords, times=times, t0=t0)
    finally:
        for step in reversed(undo):
            try:
                step()
            except Exception as err:  # pragma: no cover - teardown must go on
                print(f"teardown: {err}", file=sys.stderr)


@pytest.fixture(scope="module")
def hub(machine):
    state = machine["tmp"] / "hub-state"
    state.mkdir(mode=0o700)
    port = _free_port()
    env = {"PATH": f"{HUB / 'bin'}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
           "XAICOURSE_HUB_SHIPPED_CONFIG": str(ROOT / "deploy" / "jupyterhub_config.py"),
           "XAICOURSE_HUB_PORT": str(port), "XAICOURSE_HUB_API_PORT": str(_free_port()),
           "XAICOURSE_HUB_PROXY_API_PORT": str(_free_port()), "XAICOURSE_HUB_STATE": str(state)}
    logpath = ARTIFACTS / "hub-log.txt"
    log = open(logpath, "w")
    t = time.time()
    proc = subprocess.Popen([str(HUB / "bin" / "jupyterhub"), "-f", str(ROOT / "tests" / "hub" / "jupyterhub_config.py")],
                            cwd=state, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"jupyterhub exited ({proc.returncode}):\n{logpath.read_text()[-4000:]}")
            try:
                urllib.request.urlopen(f"{base}/hub/health", timeout=2)
                break
            except Exception:
                time.sleep(0.5)
        else:
            pytest.fail(f"jupyterhub did not answer on {base}:\n{logpath.read_text()[-4000:]}")
        machine["times"]["hub_start"] = time.time() - t
        yield dict(machine, base=base, log=logpath)
    finally:
        proc.send_signal(signal.SIGTERM)     # the hub stops every user's server and the proxy
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        pidfile = state / "jupyterhub-proxy.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
        log.close()


@pytest.fixture(scope="module")
def browser(hub):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                             "--disable-background-networking",
                                                             "--disable-dev-shm-usage"])
        yield b
        b.close()


# ----------------------------------------------------------------------------- in chromium
def _login(browser, base: str, user: str, password: str):
    """A new browser context for ``user``: the hub's login form (PAM); returns the page (spawn pending)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{base}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    return page


def _wait_lab(page, user: str):
    page.wait_for_selector(".jp-LabShell", timeout=300_000)
    assert f"/user/{user}/lab" in page.url, page.url


def _menu(page, menu: str) -> list[str]:
    page.click(f".lm-MenuBar-itemLabel:text-is('{menu}')")
    page.wait_for_selector(".lm-Menu-itemLabel")
    labels = [t.strip() for t in page.locator(".lm-Menu .lm-Menu-itemLabel").all_inner_texts()]
    return labels


def _assignments(page):
    _menu(page, "Nbgrader")
    page.click(".lm-Menu-itemLabel:text-is('Assignment List')")
    page.wait_for_selector("#released_assignments_list")


def _answers() -> dict:
    """What each student types into the two answer cells (None: leave the stub)."""
    sol = nbformat.read(ROOT / "solutions" / EX / f"{EX}.ipynb", as_version=4)
    solution = {c.metadata["nbgrader"]["grade_id"]: "\n".join(
        line for line in c.source.splitlines() if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
        for c in sol.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    from xaicourse.classroom import WRONG
    return {"full": solution, "blank": {},
            "wrong": dict(solution, topweights_answer=WRONG[(EX, "topweights_answer")].rstrip("\n"))}


HEADS = {"perturbation_answer": "def perturbation_score_vector(f, x, delta):",
         "topweights_answer": "def gradient_limit(f, x, i, deltas, exact):"}


def _work_and_submit(page, user: str, answers: dict) -> None:
    """Fetch in the Assignments tab, open the notebook, type the answers, save, submit."""
    _assignments(page)
    page.locator("#released_assignments_list .list_item", has_text=EX).locator("button", has_text="Fetch").click()
    item = page.locator("#fetched_assignments_list > .list_item", has_text=EX)
    item.wait_for()
    item.locator("a.assignment-notebooks-link").click()
    item.locator(".nested_list_item a", has_text=EX).click()
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=180_000)
    for gid, source in answers.items():
        cell = page.locator(".jp-NotebookPanel .jp-CodeCell", has_text=HEADS[gid]).filter(has_text="YOUR CODE HERE")
        cell.wait_for()
        cell.locator(".cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(source)     # verbatim: no auto-indent, no bracket closing
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    path = Path(f"/home/{user}/{EX}/{EX}.ipynb")
    want = {gid: src.strip() for gid, src in answers.items()}
    for _ in range(120):                      # the saved file holds exactly what was typed
        nb = nbformat.read(path, as_version=4)
        got = {c.metadata["nbgrader"]["grade_id"]: c.source.strip() for c in nb.cells
               if c.metadata.get("nbgrader", {}).get("grade_id") in want}
        if got == want and (answers or not page.locator(".jp-mod-dirty").count()):
            break
        time.sleep(0.5)
    assert got == want, f"{user}: the saved notebook does not hold the typed answers"
    _shot(page, f"{user}-answered")
    page.locator(".lm-TabBar-tab", has_text="Assignments").click()
    page.locator("#fetched_assignments_list > .list_item", has_text=EX).locator("button", has_text="Submit").click()
    page.locator("#submitted_assignments_list > .list_item", has_text=EX).wait_for()
    page.locator("#submitted_assignments_list .nested_list_item", has_text="UTC").first.wait_for()
    _shot(page, f"{user}-submitted")


# ----------------------------------------------------------------------------- what a student can reach
STUDENT_PROBE = r'''
import json, os, sys
def probe(path, listing=False):
    try:
        if listing:
            return "listed:" + str(len(os.listdir(path)))
        with open(path, "rb") as fh:
            return "read:" + str(len(fh.read()))
    except PermissionError:
        return "denied"
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return "error:" + type(err).__name__
paths = json.loads(sys.argv[1])
out = {p: probe(p, listing=kind == "list") for p, kind in paths.items()}
bad = []
for top, dirs, files in os.walk(sys.prefix):      # the hub's environment: never solutions/ or checks.py
    bad += [os.path.join(top, d) for d in dirs if d == "solutions"]
    bad += [os.path.join(top, f) for f in files if f == "checks.py"]
import xaicourse
pkg = os.path.dirname(xaicourse.__file__)
for top, dirs, files in os.walk(pkg):
    for f in files:
        if f.endswith((".py", ".ipynb", ".json")):
            text = open(os.path.join(top, f), errors="replace").read()
            if "BEGIN HIDDEN TESTS" in text or "### BEGIN SOLUTION" in text:
                bad.append(os.path.join(top, f))
print(json.dumps({"paths": out, "bad": bad, "package": pkg, "prefix": sys.prefix}))
'''


def _student_reach(user: str, other: str) -> dict:
    home = f"/home/{INSTRUCTOR}"
    course = f"{home}/xaicourse-course"
    paths = {home: "list",
             f"{home}/xaicourse": "list",
             f"{home}/xaicourse/solutions/{EX}/{EX}.ipynb": "read",
             f"{home}/xaicourse/solutions/{EX}/checks.py": "read",
             course: "list",
             f"{course}/source/{EX}/{EX}.ipynb": "read",
             f"{course}/gradebook.db": "read",
             f"{course}/grades.csv": "read",
             f"{course}/submitted/{other}/{EX}/{EX}.ipynb": "read",
             f"/home/{other}": "list",
             f"/home/{other}/{EX}/{EX}.ipynb": "read",
             str(EXCHANGE / "xaicourse" / "inbound"): "list",
             str(EXCHANGE / "xaicourse" / "feedback"): "list",
             str(EXCHANGE / "xaicourse" / "outbound" / EX / f"{EX}.ipynb"): "read"}
    for p in list(paths):
        if p.endswith(("grades.csv", "gradebook.db", "checks.py")) or "/submitted/" in p:
            assert Path(p).exists(), f"{p} should exist at this point (the probe would prove nothing)"
    r = _as(user, f"python -c {_shquote(STUDENT_PROBE)} {_shquote(json.dumps(paths))}", timeout=300)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _shquote(s: str) -> str:
    import shlex
    return shlex.quote(s)


# ----------------------------------------------------------------------------- the class
def _grades(path: Path) -> dict:
    with open(path, newline="") as fh:
        return {r["student"]: r for r in csv.DictReader(fh)}


@pytest.mark.slow
@pytest.mark.timeout(4800)
def test_a_class_on_a_real_jupyterhub(hub, browser):
    base, passwords, times = hub["base"], hub["passwords"], hub["times"]
    course = Path(f"/home/{INSTRUCTOR}/xaicourse-course")
    answers = _answers()

    # ---- everybody logs in (PAM); the servers spawn while the instructor releases the exercise
    t = time.time()
    pages = {u: _login(browser, base, u, passwords[u]) for u in (INSTRUCTOR, *STUDENTS)}
    release = subprocess.Popen(["runuser", "-u", INSTRUCTOR, "--", *_user_env(INSTRUCTOR), "bash", "-c",
                                f"cd ~/xaicourse && xaicourse classroom release {EX}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")
    for u, page in pages.items():
        _wait_lab(page, u)
    times["login_spawn"] = time.time() - t
    out, _ = release.communicate(timeout=600)
    assert release.returncode == 0, out
    times["release"] = time.time() - t
    assert (EXCHANGE / "xaicourse" / "outbound" / EX / f"{EX}.ipynb").is_file(), out
    assert course.stat().st_mode & 0o077 == 0, "the course folder must be private to the instructor"
    clone_mode = Path(f"/home/{INSTRUCTOR}/xaicourse").stat().st_mode & 0o777
    assert clone_mode == 0o700, oct(clone_mode)

    # ---- formgrader and Create Assignment: the instructor's, never a student's
    inst = pages[INSTRUCTOR]
    labels = _menu(inst, "Nbgrader")
    _shot(inst, "instructor-menu")
    inst.keyboard.press("Escape")
    assert "Formgrader" in labels and "Create assignment" in labels, labels
    st1 = pages["student01"]
    labels = _menu(st1, "Nbgrader")
    _shot(st1, "student-menu")
    st1.keyboard.press("Escape")
    assert "Assignment List" in labels and "Formgrader" not in labels and "Create assignment" not in labels, labels
    assert st1.get_by_text("Create Assignment", exact=True).count() == 0
    assert inst.get_by_text("Create Assignment", exact=True).count() >= 1
    probe = st1.context.request.get(f"{base}/user/student01/formgrader")
    assert probe.status == 404, f"a student's server serves formgrader ({probe.status})"

    # ---- the students: fetch, answer, save, submit (in the Assignments tab)
    t = time.time()
    for user, kind in STUDENTS.items():
        _work_and_submit(pages[user], user, answers[kind])
    times["students_work_submit"] = time.time() - t
    inbound = sorted(p.name.split("+")[0] for p in (EXCHANGE / "xaicourse" / "inbound").iterdir())
    assert inbound == sorted(STUDENTS), inbound

    # ---- the instructor: collect, grade, grade again (as the instructor, from their home folder)
    t = time.time()
    r = _as(INSTRUCTOR, f"xaicourse classroom collect {EX}")
    assert all(u in r.stdout for u in STUDENTS), r.stdout
    times["collect"] = time.time() - t
    t = time.time()
    first = _as(INSTRUCTOR, "xaicourse classroom grade", timeout=1800)
    times["grade"] = time.time() - t
    rows = _grades(course / "grades.csv")
    t = time.time()
    second = _as(INSTRUCTOR, "xaicourse classroom grade", timeout=1800)
    times["regrade"] = time.time() - t
    again = _grades(course / "grades.csv")
    # the wrong answer's notebook through `xaicourse grade` (root, the test's environment), while the
    # browser steps below run
    single = hub["tmp"] / "single"
    shutil.copytree(course / "submitted" / "student03" / EX, single / "student03" / EX)
    reference = subprocess.Popen([sys.executable, "-m", "xaicourse.cli", "--root", str(ROOT), "grade", str(single),
                                  "--out", str(hub["tmp"] / "single.csv"), "-j", "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (ARTIFACTS / "hub-grading-log.txt").write_text(first.stdout + first.stderr + "\n---- again\n" + second.stdout + second.stderr)
    assert sorted(rows) == sorted(STUDENTS), rows
    for log in (first, second):
        assert "PermissionError" not in log.stdout + log.stderr, log.stdout + log.stderr
    for r in list(rows.values()) + list(again.values()):
        assert r["status"] == "ok", r
    full, blank, wrong = (rows[u] for u in STUDENTS)
    assert float(full["score"]) == float(full["max_score"]) == 5.0, full
    assert float(blank["score"]) == 0.0, blank
    assert 0.0 < float(wrong["score"]) < 5.0, wrong
    key = ("score", "max_score", "status", "tasks")
    assert {u: [r[k] for k in key] for u, r in rows.items()} == {u: [r[k] for k in key] for u, r in again.items()}, \
        "the regrade changed a grade"
    for u in STUDENTS:
        assert list((course / "feedback" / u / EX).glob("*.html")), u

    # ---- formgrader shows the scores of the graded submissions
    inst.goto(f"{base}/user/{INSTRUCTOR}/formgrader/manage_submissions/{EX}")
    for u, row in rows.items():
        line = inst.locator("tr", has_text=u)
        line.wait_for()
        shown = re.search(r"(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)", line.inner_text())
        assert shown, line.inner_text()
        assert abs(float(shown[1]) - float(row["score"])) < 0.01 and float(shown[2]) == float(row["max_score"]), \
            (u, line.inner_text(), row)
    _shot(inst, "formgrader")

    # ---- feedback: released by the instructor, fetched and opened by each student
    t = time.time()
    r = _as(INSTRUCTOR, f"xaicourse classroom feedback {EX}")
    assert "released for 3 student(s)" in r.stdout, r.stdout
    for user in STUDENTS:
        page = pages[user]
        _assignments(page)
        page.locator("#submitted_assignments_list > .list_item", has_text=EX).locator("button", has_text="Fetch Feedback").click()
        link = page.locator("#submitted_assignments_list a", has_text="view feedback")
        link.wait_for()
        files = sorted(Path(f"/home/{user}/{EX}/feedback").glob(f"*/{EX}.html"))
        assert len(files) == 1, files
        html = files[0].read_text(encoding="utf-8")
        for word in PLUMBING:
            assert word not in html, f"{user}'s feedback shows grader plumbing: {word}"
        if user == "student01":   # opened in JupyterLab: (view feedback) → the folder → the page
            link.click()
            page.locator(".jp-DirListing-item", has_text=f"{EX}.html").dblclick()
            frame = page.frame_locator(".jp-HTMLViewer iframe")
            frame.locator("body").wait_for()
            page.wait_for_timeout(1000)
            _shot(page, f"{user}-feedback-in-lab")
            assert frame.locator("math").count() > 0, "no rendered maths (MathML) in the feedback page in JupyterLab"
        # the page itself, from the student's server
        rel = urllib.parse.quote(str(files[0].relative_to(f"/home/{user}")))
        view = page.context.new_page()
        view.goto(f"{base}/user/{user}/files/{rel}")
        view.wait_for_load_state()
        maths = view.locator("math").count()
        text = view.locator("body").inner_text()
        _shot(view, f"{user}-feedback-page")
        view.close()
        assert maths > 0, f"{user}: no MathML in the feedback page"
        for word in PLUMBING:
            assert word not in text, f"{user}'s feedback page shows {word}"
        score = f"{float(rows[user]['score']):g}"
        assert re.search(rf"\b{re.escape(score)}\s*/\s*5\b", text), f"{user}: the score {score} / 5 is not on the page"
    times["feedback"] = time.time() - t

    # ---- what a student can reach from their account (the hub's python, as student01)
    reach = _student_reach("student01", "student02")
    (ARTIFACTS / "hub-student-reach.json").write_text(json.dumps(reach, indent=1))
    assert reach["bad"] == [], f"the hub's environment holds solutions or hidden checks: {reach['bad']}"
    assert reach["package"].startswith(str(HUB)), reach["package"]
    for path, result in reach["paths"].items():
        if path.endswith(f"outbound/{EX}/{EX}.ipynb"):
            assert result.startswith("read:"), (path, result)
        else:
            assert result == "denied", f"a student can reach {path}: {result}"
    released = (EXCHANGE / "xaicourse" / "outbound" / EX / f"{EX}.ipynb").read_text()
    assert "BEGIN SOLUTION" not in released and "BEGIN HIDDEN TESTS" not in released
    for line in ('raise ValueError("every step in deltas must be positive")', "errors = (R.double() / deltas + exact).abs()"):
        assert line not in released, f"the released notebook holds solution code: {line}"

    # ---- export, typed into the instructor's JupyterLab terminal (xaicourse is on its PATH)
    t = time.time()
    inst.goto(f"{base}/user/{INSTRUCTOR}/lab")
    _wait_lab(inst, INSTRUCTOR)
    _menu(inst, "File")
    inst.click(".lm-Menu-itemLabel:text-is('New')")
    inst.click(".lm-Menu-itemLabel:text-is('Terminal')")
    inst.wait_for_selector(".jp-Terminal .xterm")
    inst.wait_for_timeout(1500)
    inst.locator(".jp-Terminal .xterm").click()
    inst.keyboard.type("xaicourse classroom export 2>&1 | tee ~/export.log\n")
    out = Path(f"/home/{INSTRUCTOR}/export.log")
    for _ in range(240):
        if out.exists() and "\n" in out.read_text():
            break
        time.sleep(0.5)
    inst.wait_for_timeout(1000)
    _shot(inst, "instructor-terminal-export")
    text = out.read_text() if out.exists() else ""
    assert "grades_by_student.csv" in text and "command not found" not in text, text
    times["export"] = time.time() - t
    with open(course / "grades_by_student.csv", newline="") as fh:
        table = {r["student"]: r for r in csv.DictReader(fh)}
    assert {u: float(table[u][EX]) for u in STUDENTS} == {u: float(rows[u]["score"]) for u in STUDENTS}, table
    t = time.time()
    out, _ = reference.communicate(timeout=1800)
    times["reference_grade_wait"] = time.time() - t
    assert reference.returncode == 0, out
    ref = _grades(hub["tmp"] / "single.csv")["student03"]
    assert (ref["score"], ref["max_score"], ref["tasks"]) == (wrong["score"], wrong["max_score"], wrong["tasks"]), \
        ("`xaicourse grade` gives the wrong answer's notebook another grade", ref, wrong)
    times["total"] = time.time() - hub["t0"]
    (ARTIFACTS / "hub-times.json").write_text(json.dumps(times, indent=1))
    (ARTIFACTS / "hub-grades.csv").write_text((course / "grades.csv").read_text())
