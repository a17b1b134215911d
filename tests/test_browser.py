"""Real browser tests: Debian's chromium driven by playwright (the system executable: no
browser download).

* JupyterLab, as a student uses it: a server on localhost, lecture 00 opened, *Run All Cells*,
  a widget slider moved with the keyboard (the panel's figure must change: the image data
  differ), the device toggle switched (cpu works, cuda on a CPU machine says why and reverts).
* The course sites (student and instructor, built once by the session fixture ``sites``) with
  every request off localhost blocked: every page loads without console errors, its images
  load, its maths is rendered by the bundled MathJax (``mjx-container`` elements), the embedded
  widget state renders.

Screenshots go to ``build/test-artifacts/``. Without chromium or playwright the tests skip and
say how to get them: ``apt-get install -y chromium`` and ``pip install -e ".[test]"``.
"""
import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "build" / "test-artifacts"
HOW = ("install it with `apt-get install -y chromium` (Debian/Ubuntu; or set XAICOURSE_CHROMIUM to a "
       "Chrome/Chromium executable) and `pip install -e \".[test]\"` for playwright")


def _chromium() -> str | None:
    for cand in (os.environ.get("XAICOURSE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        pytest.skip(f"browser tests need a chromium executable: {HOW}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"browser tests need playwright: {HOW}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- JupyterLab
@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    work = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "lectures" / "00_introduction.ipynb", work)
    port, token = _free_port(), "xaicourse-test"
    env = dict(os.environ, XAICOURSE_QUICK="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JUPYTER_CONFIG_DIR=str(work / ".jupyter"), JUPYTER_RUNTIME_DIR=str(work / ".runtime"),
               PYDEVD_DISABLE_FILE_VALIDATION="1")
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, as for a student
    log = open(work.parent / f"{work.name}-lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                             f"--ServerApp.token={token}", f"--ServerApp.root_dir={work}", "--allow-root",
                             "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except Exception:
                if proc.poll() is not None:
                    pytest.fail(f"jupyter lab exited: {Path(log.name).read_text()[-2000:]}")
                time.sleep(0.5)
        yield base, token, work
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _panel_images(page, slider):
    """The PNG data of the figures in the output that holds ``slider`` (the panel's Output widget)."""
    return slider.evaluate("""el => Array.from(el.closest('.jp-OutputArea-output').querySelectorAll('img'))
                                 .map(i => i.src).filter(s => s.startsWith('data:image'))""")


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_lecture_in_jupyterlab_sliders_and_device_toggle(browser, lab):
    base, token, work = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/lab/tree/00_introduction.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    t0 = time.time()
    started = """() => Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))
                        .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"""
    for attempt in range(2):     # on a loaded machine the menu can close before the click lands: retry once
        page.click(".lm-MenuBar-itemLabel:text-is('Run')")
        page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
        try:
            page.wait_for_function(started, timeout=30_000, polling=500)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            assert attempt == 0, "Run All Cells did not start any cell (twice)"
    # done: every prompt numbered — or the kernel idle after a traceback (Run All stops at an error)
    page.wait_for_function("""() => {
        const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'));
        const done = prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']") !== null;
        const raised = Array.from(document.querySelectorAll(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"))
            .some(e => e.textContent.includes('Traceback'));
        return done || (idle && raised);
    }""", timeout=300_000, polling=1000)
    run_all = time.time() - t0
    page.screenshot(path=str(ARTIFACTS / "lab-after-run-all.png"))
    tracebacks = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                              has_text="Traceback").count()
    assert tracebacks == 0, "a cell raised in JupyterLab"

    # the perturbation panel: move its last slider (the pixel's column) with the keyboard
    sliders = page.locator(".widget-slider .noUi-handle, .widget-hslider .noUi-handle")
    assert sliders.count() >= 1, "no ipywidgets slider rendered (widget manager missing?)"
    handle = sliders.last
    handle.scroll_into_view_if_needed()
    before = _panel_images(page, handle)
    assert before, "the panel shows no figure"
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    page.wait_for_function("""([el, before]) => {
        const imgs = Array.from(el.closest('.jp-OutputArea-output').querySelectorAll('img'))
                         .map(i => i.src).filter(s => s.startsWith('data:image'));
        return imgs.length > 0 && imgs.join() !== before.join();
    }""", arg=[handle.element_handle(), before], timeout=60_000, polling=500)
    after = _panel_images(page, handle)
    assert after and after != before, "moving the slider did not redraw the figure"
    page.screenshot(path=str(ARTIFACTS / "lab-after-slider.png"))

    # the device toggle: cpu works; cuda on a machine without a GPU explains and reverts
    toggle = page.locator(".widget-toggle-buttons").first
    toggle.scroll_into_view_if_needed()
    status = toggle.locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]")
    toggle.locator("button", has_text="cpu").click()
    page.wait_for_function("el => /using\\s+cpu/.test(el.textContent)", arg=status.element_handle(), timeout=30_000)
    toggle.locator("button", has_text="cuda").click()
    import torch
    if torch.cuda.is_available():
        page.wait_for_function("el => /using\\s+cuda/.test(el.textContent)", arg=status.element_handle(), timeout=30_000)
    else:
        page.wait_for_function("el => el.textContent.includes('⚠')", arg=status.element_handle(), timeout=30_000)
        assert "mod-active" in toggle.locator("button", has_text="cpu").get_attribute("class"), "did not revert to cpu"
    page.screenshot(path=str(ARTIFACTS / "lab-device-toggle.png"))
    (ARTIFACTS / "lab-times.txt").write_text(f"run all cells: {run_all:.1f}s\n")
    assert not [e for e in errors if "ResizeObserver" not in e], errors


# ----------------------------------------------------------------------------- the sites
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(sites):
    servers = {}
    for name in ("student", "instructor"):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(getattr(sites, name))))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers[name] = (srv, f"http://127.0.0.1:{srv.server_address[1]}")
    yield {k: v[1] for k, v in servers.items()}
    for srv, _ in servers.values():
        srv.shutdown()


def _pages(site: Path) -> list[str]:
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if not str(p.relative_to(site)).startswith(("_static", "_downloads")))


@pytest.mark.slow
@pytest.mark.parametrize("which", ["student", "instructor"])
def test_site_pages_load_offline_with_figures_and_maths(browser, sites, served, which):
    site, base = getattr(sites, which), served[which]
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked = []
    ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
              else (blocked.append(route.request.url), route.abort()))
    page = ctx.new_page()
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    pages = _pages(site)
    assert "index.html" in pages and any(p.startswith("lectures/") for p in pages)
    checked = 0
    for rel in pages:
        problems.clear()
        page.goto(f"{base}/{rel}", wait_until="load")
        src = (site / rel).read_text(encoding="utf-8")
        has_math = 'class="math' in src
        if has_math:
            page.wait_for_selector("mjx-container", timeout=30_000)
        page.wait_for_timeout(300)
        imgs = page.evaluate("Array.from(document.querySelectorAll('article img')).map(i => [i.src, i.complete && i.naturalWidth > 0])")
        assert all(ok for _, ok in imgs), f"{which}/{rel}: images not shown: {[s for s, ok in imgs if not ok]}"
        if rel.startswith("lectures/"):
            assert imgs, f"{which}/{rel} shows no figure"
            if "widget-view+json" in src:
                page.wait_for_selector(".jupyter-widgets", timeout=30_000)
        if rel.startswith("lectures/"):  # every lecture derives something: it must carry maths
            assert has_math, f"{which}/{rel}: no maths in the page"
        if has_math:
            assert page.locator("mjx-container").count() > 0, f"{which}/{rel}: maths not rendered"
        if rel.startswith(("lectures/", "exercises/", "solutions/")):
            link = page.locator("a.download", has_text="Download the notebook")
            assert link.count() == 1, f"{rel}: no download link"
            fonts = link.evaluate("a => [getComputedStyle(a.querySelector('code') || a).fontFamily, "
                                  "getComputedStyle(a.closest('p') || a.parentElement).fontFamily]")
            assert fonts[0] == fonts[1], f"{rel}: the download link is set in {fonts[0]!r}, its sentence in {fonts[1]!r}"
        if rel.startswith("lectures/") and "widget-view+json" in src:
            note = page.locator(".admonition.note", has_text="no Python runs behind a web page")
            assert note.count() == 1 and note.is_visible(), f"{which}/{rel}: no note that the widgets are static"
        if rel in ("lectures/00_introduction.html", "index.html"):
            page.screenshot(path=str(ARTIFACTS / f"site-{which}-{rel.replace('/', '-')}.png"), full_page=False)
        assert not problems, f"{which}/{rel}: {problems[:5]}"
        checked += 1
    assert not blocked or all(not u.startswith("http") or "127.0.0.1" not in u for u in blocked)
    assert checked == len(pages)
    ctx.close()
