"""End to end in a real browser: JupyterLab serves nbs/03a_panel.ipynb (with small parameters), Chromium (driven by
playwright) runs it, moves the block-size slider, trains, switches the view between excess and loss, and stops a
second run. Screenshots go to test-artifacts/."""
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
from conftest import NBS, ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "zo-gpt-browser-test"

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)
import playwright.sync_api as playwright  # noqa: E402  (a dev requirement)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def api(port, path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
        return json.loads(body) if body else None


@pytest.fixture
def lab(tmp_path):
    "JupyterLab on 127.0.0.1 serving a copy of 03a_panel.ipynb with small parameters, with news and autosave off."
    work = tmp_path / "work"; work.mkdir()
    nb = json.loads((NBS / "03a_panel.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = 'run_dir = "runs"\nmax_iters = 40\nseeds = 1\nn_head = 2\n'
    (work / "03a_panel.ipynb").write_text(json.dumps(nb))
    settings = tmp_path / "settings"
    for plugin, values in {"@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
                           "@jupyterlab/docmanager-extension/plugin": {"autosave": False}}.items():
        f = settings / f"{plugin}.jupyterlab-settings"; f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    port = free_port()
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"),
           "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
                             f"--port={port}", f"--IdentityProvider.token={TOKEN}", "--allow-root",
                             f"--ServerApp.root_dir={work}"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(120):
            try: api(port, "/api/status"); break
            except OSError: time.sleep(0.5)
        else: raise RuntimeError("JupyterLab did not start: " + (tmp_path / "lab.log").read_text()[-2000:])
        yield port
    finally:
        try:
            for s in api(port, "/api/sessions"): api(port, f"/api/sessions/{s['id']}", "DELETE")
        except OSError: pass
        proc.terminate(); proc.wait(timeout=30); log.close()


def status(page):
    return page.locator(".zo-panel .zo-status").inner_text()


def plot_src(page):
    return page.locator(".zo-panel .zo-plot").get_attribute("src")


def narrow(page):
    "At 700 px the sliders keep their values in view and no button text is cut."
    page.set_viewport_size({"width": 700, "height": 1000})
    page.locator(".zo-panel").scroll_into_view_if_needed()
    cut = page.evaluate("""() => {
        const bad = [], width = document.documentElement.clientWidth;
        for (const r of document.querySelectorAll('.zo-panel .widget-readout')) {
            const b = r.getBoundingClientRect();
            if (b.width === 0 || b.right > width || getComputedStyle(r).visibility === 'hidden') bad.push('readout ' + r.textContent);
        }
        for (const b of document.querySelectorAll('.zo-panel button'))
            if (b.scrollWidth > b.clientWidth + 1) bad.push('button ' + b.textContent);
        return bad; }""")
    page.locator(".zo-panel").screenshot(path=str(ARTIFACTS / "panel-700px.png"))
    assert cut == [], cut
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_panel_in_a_real_browser(lab):
    ARTIFACTS.mkdir(exist_ok=True)
    t_start = time.perf_counter()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"http://127.0.0.1:{lab}/lab/tree/03a_panel.ipynb?token={TOKEN}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)  # the kernel is up
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
            page.wait_for_selector(".zo-panel .zo-plot", timeout=120_000)
            # the panel is there; wait for the last cell to finish
            page.wait_for_function("""() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                return p.length && /\\[\\d+\\]/.test(p[p.length - 1].textContent); }""", timeout=180_000)
            page.locator(".zo-panel").scroll_into_view_if_needed()
            readout = page.locator(".zo-panel .zo-block .widget-readout")
            assert readout.inner_text().strip() == "256"
            excess_view = page.locator(".zo-panel .zo-view button", has_text="excess")
            assert "mod-active" in excess_view.get_attribute("class")      # the notebook switched to the excess view
            page.locator(".zo-panel .zo-block .noUi-handle").focus()
            page.keyboard.press("ArrowLeft")                           # block 256 -> 128
            page.wait_for_function("document.querySelector('.zo-block .widget-readout').textContent.trim() === '128'")
            page.wait_for_selector(".zo-panel button[title*='block 128,']", timeout=30_000)
            before = plot_src(page)
            page.locator(".zo-panel button", has_text="Train").click()
            page.wait_for_function("document.querySelector('.zo-status').textContent.includes('done:')", timeout=120_000)
            text = status(page)
            excess = float(re.search(r"excess (\d\.\de[+-]\d+) \+- (\d\.\de[+-]\d+)", text).group(1))
            assert "run 5: batch 16 x block 128" in text and 0 < excess < 0.1, text
            page.wait_for_selector(".zo-panel .zo-plot.zo-shows-excess.zo-runs-5.zo-settled")  # the picture with run 5 done
            assert plot_src(page) != before
            page.locator(".zo-panel").screenshot(path=str(ARTIFACTS / "panel-after-run.png"))
            page.locator(".zo-panel .zo-view button", has_text="loss").click()     # the same runs, seen as losses
            page.wait_for_selector(".zo-panel .zo-plot.zo-shows-loss.zo-runs-5.zo-settled")  # the picture of the new view
            page.locator(".zo-panel").screenshot(path=str(ARTIFACTS / "panel-loss-view.png"))
            narrow(page)
            page.locator(".zo-panel .zo-view button", has_text="excess").click()
            # a longer second run, stopped
            page.locator(".zo-panel .widget-hslider", has_text="max steps").locator(".noUi-handle").focus()
            page.keyboard.press("End")
            page.wait_for_function("""[...document.querySelectorAll('.zo-panel .widget-hslider')]
                .some(s => s.textContent.includes('max steps') && s.querySelector('.widget-readout').textContent.trim() === '3000')""")
            # the readout moves before the kernel has the value: wait for the kernel's own word, the Train button's tooltip
            page.wait_for_selector(".zo-panel button[title*='3000 steps']", timeout=30_000)
            page.locator(".zo-panel button", has_text="Train").click()
            page.wait_for_function("document.querySelector('.zo-status').textContent.includes('step ')", timeout=60_000)
            page.locator(".zo-panel button", has_text="Stop").click()
            page.wait_for_function("document.querySelector('.zo-status').textContent.includes('stopped at step')", timeout=30_000)
            steps = int(re.search(r"stopped at step (\d+) of 3000", status(page)).group(1))
            assert 0 < steps < 3000
            page.locator(".zo-panel").screenshot(path=str(ARTIFACTS / "panel-stopped.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    print(f"browser test took {time.perf_counter() - t_start:.1f} s")
