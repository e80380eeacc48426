"""The timeline widget in a real Chromium: in JupyterLab, and as an offline HTML file.

Debian's chromium driven by Playwright (``executable_path``; never ``playwright install``); see
../shared/browser-testing.md. Without chromium these tests skip locally and fail when ``CI=true``.
Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = os.environ.get("DGVIZ_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "citoken"
XSS = "<img src=x onerror=window.__pwned=1>"
BREAKOUT = "</script><script>window.__pwned=2</script>"


def _skip_or_fail(msg: str) -> None:
    """A missing test dependency: skip here, fail in CI (where everything must be installed)."""
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def _need_browser():
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if missing:
        _skip_or_fail("browser tests need " + " and ".join(missing))


@pytest.fixture(scope="session", autouse=True)
def _browser_available():
    """Checked before any other fixture (the tiny-model recording) is built."""
    _need_browser()


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda err: pg.errors.append(f"{err.message}\n{err.stack or ''}"))
    yield pg
    context.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(cells: list[str]) -> dict:
    return {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
                       "outputs": [], "source": src} for i, src in enumerate(cells)],
            "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)",
                                        "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny_trace):
    _need_browser()
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        _skip_or_fail("browser tests need jupyterlab in this environment")
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    tiny_trace.save(root / "tiny.dgtrace")
    (tmp / "cfg" / "labconfig").mkdir(parents=True)
    (tmp / "cfg" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "cfg"), JUPYTER_DATA_DIR=str(tmp / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp / "rt"), IPYTHONDIR=str(tmp / "ipy"),
               JUPYTER_PLATFORM_DIRS="1")
    port = _free_port()
    log = open(tmp / "lab.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         f"--LabApp.workspaces_dir={tmp / 'ws'}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (tmp / "lab.log").read_text()[-3000:]
                raise RuntimeError(f"JupyterLab did not start:\n{tail}")
            time.sleep(0.3)
        yield {"base": base, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _wait_kernel_idle(base: str, notebook: str, timeout: float = 90) -> None:
    """Wait until the notebook's own kernel (started by the page) exists and is idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/sessions?token={TOKEN}", timeout=5) as r:
                sessions = json.loads(r.read())
            for s in sessions:
                state = (s.get("kernel") or {}).get("execution_state")
                if s.get("path") == notebook and state == "idle":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"no idle kernel for {notebook}")


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def _canvas_text(widget) -> str:
    return "".join(widget.locator(".dgv-tok").all_text_contents())


# ---------------------------------------------------------------------------- JupyterLab
def test_jupyterlab_replays_scrubs_inspects_and_runs_live(lab, page, tiny_trace):
    from playwright.sync_api import expect

    cells = [
        "import dgviz\nfrom dgviz.widget import Timeline\n"
        "trace = dgviz.load_trace('tiny.dgtrace')\nw = Timeline(trace, step=0)\nw",
        "print(f'SELECTION {w.selection}')",
        "from dgviz.testing import tiny_model\nfrom dgviz.widget import show\n"
        "live = show(*tiny_model(), 'the cat sat', seed=1, max_new_tokens=32,\n"
        "            max_denoising_steps=6)",
        "small = Timeline(trace, max_bytes=8000)\nsmall",
    ]
    (lab["root"] / "t1.ipynb").write_text(json.dumps(_notebook(cells)))
    page.goto(f"{lab['base']}/lab/tree/t1.ipynb?token={TOKEN}&reset")
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Python 3 (ipykernel) | Idle",
                                                               timeout=90_000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

    w = page.locator(".jp-OutputArea-output .dgv-root").first
    expect(w).to_be_visible(timeout=60_000)
    expect(w.locator(".dgv-tok")).to_have_count(16, timeout=30_000)
    expect(w).to_have_attribute("data-step", "0")
    before = _canvas_text(w)

    # scrub: click at 80% of the slider -> a later step, other tokens
    slider = w.locator(".dgv-slider")
    box = slider.bounding_box()
    page.mouse.click(box["x"] + 0.8 * box["width"], box["y"] + box["height"] / 2)
    step = int(w.get_attribute("data-step"))
    assert step >= 15
    assert _canvas_text(w) != before
    # the keyboard works inside JupyterLab (its document handler would eat arrow keys)
    w.locator(".dgv-play").focus()
    page.keyboard.press("ArrowLeft")
    expect(w).to_have_attribute("data-step", str(step - 1))
    step -= 1
    canvas = tiny_trace.step_canvas[step]
    assert w.get_attribute("data-canvas") == str(canvas)

    # click a token: the inspector shows its top-k alternatives at this step
    w.locator('.dgv-tok[data-pos="3"]').click()
    inspector = w.locator(".dgv-inspector")
    expect(inspector).to_have_attribute("data-position", "3")
    alts = inspector.locator(".dgv-alt")
    expect(alts).to_have_count(tiny_trace.topk_ids.shape[3])
    top = tiny_trace.topk_ids[0, step, 3]
    probs = tiny_trace.topk_probs[0, step, 3]
    for rank in range(len(top)):
        expect(alts.nth(rank).locator(".dgv-alt-tok")).to_have_text(tiny_trace.tokens([top[rank]])[0])
        expect(alts.nth(rank).locator(".dgv-alt-p")).to_have_text(f"{probs[rank]:.3f}")
    expect(inspector).to_contain_text("Experts per decoder layer")

    # the click reached Python: re-run the print cell
    cell = page.locator(".jp-Cell").nth(1)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    expected = {"step": step, "canvas": int(canvas), "position": 3}
    out = cell.locator(".jp-OutputArea-output")
    expect(out).to_contain_text("SELECTION {", timeout=30_000)
    got = ast.literal_eval(out.inner_text().strip().removeprefix("SELECTION "))
    assert got == expected

    # live mode: a second widget that fills while the tiny model generates, then says done
    live = page.locator(".jp-OutputArea-output .dgv-root").nth(1)
    expect(live.locator(".dgv-status")).to_contain_text("done:", timeout=90_000)
    expect(live.locator(".dgv-tok")).to_have_count(16)
    expect(live).to_have_attribute("data-step", "11")  # followed the run to its last step

    # a trace over max_bytes: canvases come from the kernel when the playhead reaches them
    small = page.locator(".jp-OutputArea-output .dgv-root").nth(2)
    expect(small.locator(".dgv-note")).to_contain_text("sent on demand (1 of 3 loaded)")
    small.locator(".dgv-play").focus()
    page.keyboard.press("PageDown")
    expect(small).to_have_attribute("data-canvas", "1")
    expect(small.locator(".dgv-tok")).to_have_count(16, timeout=30_000)
    first = tiny_trace.canvas_steps(1)[0]
    expect(small).to_have_attribute("data-step", str(first))
    ids = tiny_trace.topk_ids[0, first, 0, :1]  # any check that the canvas is the right one:
    small.locator('.dgv-tok[data-pos="0"]').click()
    expect(small.locator(".dgv-alt-tok").first).to_have_text(tiny_trace.tokens(ids)[0])
    _shot(page, "browser-lab.png")
    assert page.errors == []


def test_jupyterlab_synced_timelines_move_together(lab, page):
    """Synced views in JupyterLab: anywidget may import the bundle once per widget, and the views
    must still find each other (the registry is page-wide); the mode switch reaches Python."""
    from playwright.sync_api import expect

    cells = [
        "import dgviz\nfrom dgviz.testing import tiny_model\nfrom dgviz.widget import synced\n"
        "trace = dgviz.load_trace('tiny.dgtrace')\n"
        "short = dgviz.record(*tiny_model(), 'the cat sat', seed=0, max_new_tokens=32,\n"
        "                     max_denoising_steps=3)\n"
        "box = synced([trace, short], ['long', 'short'])\nbox",
        "print('MODES', [v.sync_mode for v in box.children])",
        "box.children[0].sync_mode = 'normalized'",
    ]
    (lab["root"] / "t3.ipynb").write_text(json.dumps(_notebook(cells)))
    page.goto(f"{lab['base']}/lab/tree/t3.ipynb?token={TOKEN}&reset")
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Python 3 (ipykernel) | Idle",
                                                               timeout=90_000)
    page.locator(".jp-Cell").nth(0).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    views = [page.locator(".jp-OutputArea-output .dgv-root").nth(i) for i in range(2)]
    for w in views:
        expect(w.locator(".dgv-tok")).to_have_count(16, timeout=60_000)
        expect(w).to_have_attribute("data-compact", "true")
    expect(views[1].locator(".dgv-title")).to_have_text("short")
    _slide(views[0], 23)
    expect(views[1]).to_have_attribute("data-step", "5")
    _slide(views[1], 0)
    expect(views[0]).to_have_attribute("data-step", "0")
    views[1].locator(".dgv-syncmode").select_option("forward_passes")
    expect(views[0]).to_have_attribute("data-sync-mode", "forward_passes")
    _slide(views[0], 9)
    expect(views[1]).to_have_attribute("data-step", "5")  # finished after 6 passes
    expect(views[0]).to_have_attribute("data-step", "9")
    cell = page.locator(".jp-Cell").nth(1)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    expect(cell.locator(".jp-OutputArea-output")).to_contain_text(
        "MODES ['forward_passes', 'forward_passes']", timeout=30_000)
    page.keyboard.press("Shift+Enter")  # now in cell 2: Python switches the mode back
    for w in views:
        expect(w).to_have_attribute("data-sync-mode", "normalized", timeout=30_000)
    _shot(page, "browser-lab-synced.png")
    ours = [e for e in page.errors if re.search(r"blob:|anywidget|dgv", e)]
    assert ours == [], ours


def test_jupyterlab_branches_a_run_live(lab, page):
    """Pin a token, type a replacement, press Enter: the branch records live below the run,
    synced with it, its fork marked and the tokens that differ underlined; Python has it."""
    from playwright.sync_api import expect

    cells = [
        "import dgviz\nfrom dgviz.testing import tiny_model\nmodel, tok = tiny_model()\n"
        "trace = dgviz.record(model, tok, 'the cat sat', seed=4, max_new_tokens=32,\n"
        "                     max_denoising_steps=6)\n"
        "w = dgviz.show(trace, model=model, tokenizer=tok)",
        "b = w.branches[0]\nt = b.wait(60)\n"
        "print('BRANCH', t.fork['step'], t.fork['edits'], b.status.split(':')[0], "
        "t.final_tokens[0, 0, 5] == tok.convert_tokens_to_ids('cat'))",
    ]
    (lab["root"] / "t4.ipynb").write_text(json.dumps(_notebook(cells)))
    page.goto(f"{lab['base']}/lab/tree/t4.ipynb?token={TOKEN}&reset")
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Python 3 (ipykernel) | Idle",
                                                               timeout=90_000)
    page.locator(".jp-Cell").nth(0).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    w = page.locator(".jp-OutputArea-output .dgv-root").first
    expect(w.locator(".dgv-tok")).to_have_count(16, timeout=60_000)
    bar = w.locator(".dgv-branch")
    expect(bar).to_be_visible()
    expect(bar).to_have_attribute("data-ready", "false")
    height = w.bounding_box()["height"]
    w.locator(".dgv-play").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(w).to_have_attribute("data-step", "2")
    w.locator('.dgv-tok[data-pos="5"]').click()
    expect(bar).to_have_attribute("data-ready", "true")
    expect(bar).to_have_attribute("data-step", "2")
    expect(bar.locator(".dgv-branch-alt option")).to_have_count(5)  # the top-5 alternatives
    assert w.bounding_box()["height"] == height  # the line was there all along
    cells_before = page.locator(".jp-Cell").count()
    box = bar.locator(".dgv-branch-text")
    box.click()
    page.keyboard.type("cat")  # letters the notebook's command mode would take
    expect(box).to_have_value("cat")
    assert page.locator(".jp-Cell").count() == cells_before
    page.keyboard.press("Enter")
    child = page.locator(".jp-OutputArea-output .dgv-root").nth(1)
    expect(child.locator(".dgv-status")).to_contain_text("done:", timeout=90_000)
    expect(child.locator(".dgv-title")).to_contain_text("branch at step 3: position 5")
    expect(child.locator(".dgv-facts")).to_contain_text("branched at step 3")
    expect(child.locator(".dgv-forkmark")).to_have_count(1)
    # synced step for step: the parent's playhead moves the branch
    w.locator(".dgv-play").focus()
    page.keyboard.press("Home")
    expect(child).to_have_attribute("data-step", "0")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(child).to_have_attribute("data-step", "3")
    expect(child.locator('.dgv-tok[data-pos="5"]')).to_have_attribute("data-differs", "1")
    expect(child.locator('.dgv-tok[data-pos="5"]')).to_have_attribute("data-state", "5")  # held
    expect(child.locator('.dgv-tok[data-pos="5"]')).to_have_text("cat")
    child.locator('.dgv-tok[data-pos="5"]').click()
    expect(child.locator(".dgv-inspector")).to_contain_text("held")
    cell = page.locator(".jp-Cell").nth(1)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    expect(cell.locator(".jp-OutputArea-output")).to_contain_text(
        "BRANCH 2 {'5': ", timeout=60_000)
    expect(cell.locator(".jp-OutputArea-output")).to_contain_text("done True")
    w.locator('.dgv-tok[data-pos="5"]').click()  # pin the same token in the parent
    ARTIFACTS.mkdir(exist_ok=True)
    w.screenshot(path=str(ARTIFACTS / "browser-lab-branch-parent.png"))
    child.screenshot(path=str(ARTIFACTS / "browser-lab-branch-child.png"))
    _shot(page, "browser-lab-branch.png")
    ours = [e for e in page.errors if re.search(r"blob:|anywidget|dgv", e)]
    assert ours == [], ours


def _need(module: str, why: str) -> None:
    try:
        __import__(module)
    except ImportError:
        _skip_or_fail(f"{why} needs `{module}`")


def _play_scrub_inspect(page, w, trace) -> int:
    """What every front end must do with the tiny trace's widget (shown at step 0): keys, play
    and pause, scrub with the mouse, open the inspector on a token; the widget's height stays
    the same throughout. Returns the step the inspector was opened at."""
    from playwright.sync_api import expect

    expect(w.locator(".dgv-tok")).to_have_count(16, timeout=60_000)
    expect(w).to_have_attribute("data-step", "0")
    height = w.evaluate("e => e.getBoundingClientRect().height")
    w.locator(".dgv-play").focus()
    page.keyboard.press("ArrowRight")
    expect(w).to_have_attribute("data-step", "1")
    w.locator(".dgv-speed").select_option("16")
    w.locator(".dgv-play").click()
    expect(w).to_have_attribute("data-playing", "true")
    expect(w).not_to_have_attribute("data-step", "1")
    w.locator(".dgv-play").click()  # pause
    expect(w).to_have_attribute("data-playing", "false")
    expect(w.locator(".dgv-play")).to_have_text("Play")
    box = w.locator(".dgv-slider").bounding_box()
    page.mouse.click(box["x"] + 0.7 * box["width"], box["y"] + box["height"] / 2)
    expect(w).not_to_have_attribute("data-step", "1")
    step = int(w.get_attribute("data-step"))
    assert step >= 12, step
    w.locator('.dgv-tok[data-pos="3"]').click()
    inspector = w.locator(".dgv-inspector")
    expect(inspector).to_have_attribute("data-position", "3")
    alts = inspector.locator(".dgv-alt-tok")
    expect(alts).to_have_count(trace.topk_ids.shape[3])
    expect(alts.first).to_have_text(trace.tokens([trace.topk_ids[0, step, 3, 0]])[0])
    assert w.evaluate("e => e.getBoundingClientRect().height") == height
    return step


def test_notebook7_plays_scrubs_and_inspects(lab, page, tiny_trace):
    from playwright.sync_api import expect

    _need("notebook", "the Notebook 7 test")
    cells = ["import dgviz\nfrom dgviz.widget import Timeline\n"
             "w = Timeline(dgviz.load_trace('tiny.dgtrace'), step=0)\nw",
             "print(f'SELECTION {w.selection}')"]
    (lab["root"] / "t2.ipynb").write_text(json.dumps(_notebook(cells)))
    page.goto(f"{lab['base']}/notebooks/t2.ipynb?token={TOKEN}")
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
    _wait_kernel_idle(lab["base"], "t2.ipynb")
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    w = page.locator(".jp-OutputArea-output .dgv-root")
    step = _play_scrub_inspect(page, w, tiny_trace)
    # the click reached the kernel: run the print cell again
    cell = page.locator(".jp-Cell").nth(1)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    expected = {"step": step, "canvas": int(tiny_trace.step_canvas[step]), "position": 3}
    expect(cell.locator(".jp-OutputArea-output")).to_contain_text(f"SELECTION {expected}",
                                                                  timeout=30_000)
    _shot(page, "browser-notebook7.png")
    # Notebook 7 raises a few errors of its own in this headless setup ("Command
    # 'filebrowser:open-path' not registered.", a missing settings schema): keep those whose stack
    # runs through a widget module (anywidget loads our ESM from a blob: URL).
    ours = [e for e in page.errors if re.search(r"blob:|anywidget|dgv", e)]
    assert ours == [], ours


# ---------------------------------------------------------------------------- marimo
MARIMO_APP = """
import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo

    import dgviz

    w = mo.ui.anywidget(dgviz.Timeline(dgviz.load_trace("tiny.dgtrace"), step=0))
    w
    return mo, w


@app.cell
def _(mo, w):
    mo.md(f"SELECTION {w.widget.selection}")
    return


if __name__ == "__main__":
    app.run()
"""


@pytest.fixture(scope="module")
def marimo_app(tmp_path_factory, tiny_trace):
    """`marimo run` serving a notebook with `mo.ui.anywidget(Timeline(...))` on localhost (marimo's
    front end comes from its wheel: no CDN)."""
    _need_browser()
    _need("marimo", "the marimo test")
    root = tmp_path_factory.mktemp("marimo")
    tiny_trace.save(root / "tiny.dgtrace")
    (root / "app.py").write_text(MARIMO_APP)
    port = _free_port()
    env = dict(os.environ, XDG_CONFIG_HOME=str(root / "cfg"), XDG_CACHE_HOME=str(root / "cache"),
               XDG_STATE_HOME=str(root / "state"))
    log = open(root / "marimo.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "marimo", "run", "app.py", "--headless", "--host", "127.0.0.1",
         "--port", str(port), "--no-token", "--no-sandbox"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "marimo.log").read_text()[-3000:]
                raise RuntimeError(f"marimo did not start:\n{tail}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_marimo_plays_scrubs_and_inspects(marimo_app, page, tiny_trace):
    """`mo.ui.anywidget(dgviz.Timeline(trace))` in marimo (which renders anywidgets in a shadow
    root): the same checks as in Notebook 7, the click reaches Python (a dependent cell re-runs),
    and nothing is fetched from outside localhost."""
    from playwright.sync_api import expect

    outside: list[str] = []

    def handle(route):
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", handle)
    page.goto(marimo_app)
    w = page.locator(".dgv-root")
    step = _play_scrub_inspect(page, w, tiny_trace)
    expected = {"step": step, "canvas": int(tiny_trace.step_canvas[step]), "position": 3}
    expect(page.get_by_text(f"SELECTION {expected}")).to_be_visible(timeout=30_000)
    _shot(page, "browser-marimo.png")
    assert outside == []
    ours = [e for e in page.errors if re.search(r"blob:|anywidget|dgv", e)]
    assert ours == [], ours


# ---------------------------------------------------------------------------- offline HTML
def _offline(page) -> list[str]:
    outside: list[str] = []

    def handle(route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", handle)
    return outside


def test_offline_html_replays_without_network(page, tiny_trace, tmp_path):
    from playwright.sync_api import expect

    path = tiny_trace.to_html(tmp_path / "run.html")
    outside = _offline(page)
    page.goto(path.as_uri())
    w = page.locator(".dgv-root")
    expect(w.locator(".dgv-tok")).to_have_count(16, timeout=20_000)
    expect(w).to_have_attribute("data-step", "0")
    first = _canvas_text(w)
    w.locator(".dgv-speed").select_option("4")  # canvas 2 plays for 2 s: the poll sees it
    page.keyboard.press("Escape")
    w.focus()
    page.keyboard.press(" ")  # play
    expect(w).to_have_attribute("data-playing", "true")
    expect(w.locator(".dgv-play")).to_have_text("Pause")
    expect(w).to_have_attribute("data-canvas", "1", timeout=10_000)
    page.keyboard.press(" ")  # pause
    assert _canvas_text(w) != first
    page.keyboard.press("End")
    expect(w).to_have_attribute("data-step", str(tiny_trace.num_steps - 1))
    # the last step shows the final text of the last canvas
    final = "".join(t.replace("\n", "\u21b5\n") or "\u2205"
                    for t in tiny_trace.tokens(tiny_trace.final_tokens[0, -1]))
    assert _canvas_text(w) == final
    w.locator('.dgv-tok[data-pos="0"]').click()
    expect(w.locator(".dgv-inspector .dgv-alt")).to_have_count(5)
    _shot(page, "browser-offline.png")
    assert outside == []
    assert page.errors == []


def test_hostile_token_text_renders_as_text(page, tiny_trace, tmp_path):
    from playwright.sync_api import expect

    trace = copy.copy(tiny_trace)
    trace.token_text = dict(tiny_trace.token_text)
    final = tiny_trace.final_tokens[0, -1]
    trace.token_text[int(final[0])] = XSS
    trace.token_text[int(final[1])] = BREAKOUT
    path = trace.to_html(tmp_path / "hostile.html", step=-1)
    outside = _offline(page)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    w = page.locator(".dgv-root")
    expect(w.locator(".dgv-tok")).to_have_count(16, timeout=20_000)
    expect(w.locator('.dgv-tok[data-pos="0"]')).to_have_text(XSS)
    expect(w.locator('.dgv-tok[data-pos="1"]')).to_have_text(BREAKOUT)
    w.locator('.dgv-tok[data-pos="0"]').click()
    expect(w.locator(".dgv-insp-token")).to_contain_text("<img")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 3
    assert dialogs == []
    assert outside == []
    assert page.errors == []


def _height(page, selector: str = ".dgv-root") -> float:
    return page.evaluate(f"document.querySelector('{selector}').getBoundingClientRect().height")


def test_widget_height_holds_still_on_hover_pin_and_step(page, tiny_trace, tmp_path):
    """Hovering, pinning, unpinning and stepping never change the widget's height (to the pixel):
    the cells below a widget must not jump. Token text of very different lengths makes the
    canvas re-wrap from step to step; a very long model name must be ellipsised, not wrap."""
    from playwright.sync_api import expect

    trace = copy.copy(tiny_trace)
    words = ["a", "much longer token", " x", "\n", "mid-size", "   ", "yet another long token"]
    trace.token_text = {i: words[i % len(words)] * (1 + i % 3) for i in tiny_trace.token_text}
    trace.meta = {**tiny_trace.meta, "model": {**tiny_trace.meta.get("model", {}),
                                                "name_or_path": "/checkpoints/" + "long" * 80}}
    path = trace.to_html(tmp_path / "still.html")
    page.goto(path.as_uri())
    w = page.locator(".dgv-root")
    expect(w.locator(".dgv-tok")).to_have_count(16, timeout=20_000)
    page.wait_for_timeout(200)  # fonts and the first ResizeObserver round settle
    heights = {"first paint": _height(page)}
    w.locator('.dgv-tok[data-pos="3"]').hover()
    heights["hover"] = _height(page)
    w.locator('.dgv-tok[data-pos="3"]').click()
    heights["pin"] = _height(page)
    page.mouse.move(5, 5)
    for i in range(10):
        page.keyboard.press("ArrowRight")  # 10 steps, across a canvas boundary, pinned
        expect(w).to_have_attribute("data-step", str(i + 1))
        heights[f"step {i + 1}"] = _height(page)
    w.locator('.dgv-tok[data-pos="3"]').click()
    heights["unpin"] = _height(page)
    w.locator('.dgv-tok[data-pos="9"]').hover()
    heights["hover again"] = _height(page)
    page.keyboard.press("End")
    heights["last step"] = _height(page)
    _shot(page, "browser-still.png")
    assert len(set(heights.values())) == 1, heights
    facts = w.locator(".dgv-facts")
    assert facts.evaluate("e => e.scrollWidth > e.clientWidth")  # clipped, with an ellipsis
    assert facts.evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"
    assert page.errors == []


# ---------------------------------------------------------------------------- synced replay
def _slide(widget, value: int) -> None:
    """Move a range slider as a user does (value + input event)."""
    widget.locator(".dgv-slider").evaluate(
        "(el, v) => { el.value = String(v);"
        " el.dispatchEvent(new Event('input', {bubbles: true})); }", value)


def test_synced_runs_scrub_together_offline(page, tiny, tmp_path):
    from playwright.sync_api import expect

    import dgviz
    from dgviz.html import traces_to_html

    traces = [dgviz.record(*tiny, "the cat sat", seed=0, max_new_tokens=32, max_denoising_steps=k)
              for k in (3, 5, 8)]
    steps = [t.num_steps for t in traces]
    assert len(set(steps)) == 3, steps
    hostile = copy.copy(traces[1])
    hostile.token_text = dict(traces[1].token_text)
    hostile.token_text[int(traces[1].prompt_ids[0, -1])] = XSS  # shown in the grey context
    traces[1] = hostile
    labels = ["3 steps / canvas", "5 steps / canvas <b>bold?</b>", "8 steps / canvas"]
    path = traces_to_html(traces, tmp_path / "compare.html", labels=labels)
    outside = _offline(page)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    views = [page.locator(".dgv-root").nth(i) for i in range(3)]
    expect(page.locator(".dgv-root")).to_have_count(3, timeout=20_000)
    for w in views:
        expect(w.locator(".dgv-tok")).to_have_count(16, timeout=20_000)
        expect(w).to_have_attribute("data-step", "0")
        expect(w).to_have_attribute("data-compact", "true")
        expect(w.locator(".dgv-inspector")).to_be_hidden()
    expect(views[1].locator(".dgv-title")).to_have_text(labels[1])  # as text, not markup
    expect(views[1].locator(".dgv-context")).to_contain_text(XSS)

    def at(expected):
        for w, s in zip(views, expected, strict=True):
            expect(w).to_have_attribute("data-step", str(s))

    # normalized: the slider runs over the longest run's steps; the same fraction everywhere
    longest = max(steps) - 1
    _slide(views[0], longest)
    at([n - 1 for n in steps])
    _slide(views[2], longest // 2)
    at([round(longest // 2 / longest * (n - 1)) for n in steps])
    views[1].focus()
    page.keyboard.press("Home")
    at([0, 0, 0])
    page.keyboard.press("ArrowRight")  # one step of the 10-step run = 1/9 of the way
    at([round(1 / (steps[1] - 1) * (n - 1)) for n in steps])

    # forward passes: switched from one member's UI, every member follows
    views[2].locator(".dgv-syncmode").select_option("forward_passes")
    for w in views:
        expect(w).to_have_attribute("data-sync-mode", "forward_passes")
    _slide(views[0], 4)
    at([min(4, n - 1) for n in steps])
    _slide(views[1], 9)  # the 6-step run has finished: it shows its last step
    at([min(9, n - 1) for n in steps])
    expect(views[0].locator(".dgv-steplabel")).to_contain_text(f"step {steps[0]}/{steps[0]}")
    _slide(views[2], max(steps) - 1)
    at([n - 1 for n in steps])
    # Play in the shortest run plays the shared axis: the longest run plays to its end too
    _slide(views[0], 0)
    at([0, 0, 0])
    views[0].locator(".dgv-play").click()
    expect(views[2]).to_have_attribute("data-step", str(steps[2] - 1), timeout=15_000)
    at([n - 1 for n in steps])
    expect(views[0]).to_have_attribute("data-playing", "false")
    # a click on a token in compact mode is harmless
    views[0].locator('.dgv-tok[data-pos="3"]').click()
    _shot(page, "browser-compare.png")
    # back to normalized from another member
    views[0].locator(".dgv-syncmode").select_option("normalized")
    for w in views:
        expect(w).to_have_attribute("data-sync-mode", "normalized")
    _slide(views[1], 0)
    at([0, 0, 0])
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator("b").count() == 0
    assert dialogs == []
    assert outside == []
    assert page.errors == []

    # the docs image: the same three runs without the hostile token, a third of the way through
    clean = [traces[0], dgviz.record(*tiny, "the cat sat", seed=0, max_new_tokens=32,
                                     max_denoising_steps=5), traces[2]]
    names = [f"max_denoising_steps={k} ({t.num_steps} steps)" for k, t in zip((3, 5, 8), clean,
                                                                           strict=True)]
    doc = traces_to_html(clean, tmp_path / "doc.html", labels=names)
    page.set_viewport_size({"width": 1000, "height": 300})
    page.goto(doc.as_uri())
    expect(page.locator(".dgv-root").nth(2).locator(".dgv-tok")).to_have_count(16, timeout=20_000)
    _slide(page.locator(".dgv-root").nth(2), 5)
    expect(page.locator(".dgv-root").nth(0)).to_have_attribute("data-step", "2")
    page.screenshot(path=str(ROOT / "docs" / "images" / "widget-compare.png"), full_page=True)
    assert page.errors == []
