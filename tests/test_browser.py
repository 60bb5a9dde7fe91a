"""End to end in a real browser: JupyterLab serves nbs/03a_panel.ipynb (with small parameters), Chromium (driven by
playwright) runs it, clears the comparison's short runs, moves the block-size and steps sliders, trains a 300-step
run, switches the view between excess and loss, and stops a second run. Its screenshot of the loss view is the
index's. The test finds the panel's widgets as a reader does, by their labels, texts and roles, and waits for what
the page shows (a status line, a new picture), never for a fixed time. Screenshots go to test-artifacts/."""
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

from zo_gpt.notebooks import NOTEBOOK_FILE

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "zo-gpt-browser-test"
MINUTE = 60_000  # ms, playwright's unit

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)
import playwright.sync_api as playwright  # noqa: E402  (a dev requirement)
from playwright.sync_api import expect  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
        return json.loads(body) if body else None


@pytest.fixture
def lab(tmp_path, cpu_data):
    """JupyterLab on 127.0.0.1 serving a copy of 03a_panel.ipynb with small parameters and no stored outputs (so every
    widget on the page is live), its dataset already made, with news and autosave off. Yields (port, code cells)."""
    work = tmp_path / "work"
    work.mkdir()
    nb = json.loads((NBS / "03a_panel.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = 'run_dir = "runs"\nmax_iters = 40\nseeds = 1\nn_head = 2\ncompare = True\n'
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for c in code: c["outputs"], c["execution_count"] = [], None
    nb["metadata"].pop("widgets", None)
    (work / "03a_panel.ipynb").write_text(json.dumps(nb))
    (work / "runs").mkdir(); (work / "runs" / NOTEBOOK_FILE).write_text("03a_panel\n")   # marked, as its first cell does; its kernel holds it,
    shutil.copytree(cpu_data, work / "runs" / "data-compact")   # with the cpu preset's data, as the notebook would make it
    settings = tmp_path / "settings"
    quiet = {"@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
             "@jupyterlab/docmanager-extension/plugin": {"autosave": False}}
    for plugin, values in quiet.items():
        f = settings / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    port = free_port()
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"),
           "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
                             f"--port={port}", f"--IdentityProvider.token={TOKEN}", "--allow-root",
                             f"--ServerApp.root_dir={work}"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:  # the server answers when it is up
            try:
                api(port, "/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start: " + (tmp_path / "lab.log").read_text()[-2000:])
                time.sleep(0.2)
        yield port, len(code)
    finally:
        try:
            for s in api(port, "/api/sessions"): api(port, f"/api/sessions/{s['id']}", "DELETE")
        except OSError: pass
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def slider(panel, label):
    "The slider a label names: the label, the handle (role slider) and the value it reads."
    return panel.get_by_text(label, exact=True).locator("xpath=..")


def reading(slider):
    "The value a slider shows beside it."
    return slider.locator(".widget-readout").text_content().strip()


def status(panel, pattern):
    "The status line, once it says something that matches `pattern`."
    line = panel.get_by_text(re.compile(pattern))
    expect(line).to_be_visible(timeout=2 * MINUTE)
    return line.inner_text()


SHA256 = """async img => { const bytes = await (await fetch(img.src)).arrayBuffer();
    const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return [...d].map(b => b.toString(16).padStart(2, '0')).join(''); }"""


def shows_the_panels_picture(page, plot, check):
    """Ask the kernel, in a new cell at the end of the notebook, for the panel's picture once its runs are done and
    drawn, and wait until the page shows that very picture (it arrives a moment after the cell's answer)."""
    page.get_by_text("summary = {").click()                     # the last cell of the notebook
    page.keyboard.press("Escape")
    page.keyboard.press("b")                                    # a new cell below it
    page.keyboard.press("Enter")
    page.keyboard.insert_text(f"import hashlib\ndone = panel.wait(60)\nshown = bytes(panel.image.value)\n"
                              f"print('check {check}:', done, hashlib.sha256(shown).hexdigest(), shown == panel.picture())")
    page.keyboard.press("Shift+Enter")
    answer = page.get_by_text(re.compile(f"^check {check}: "))
    expect(answer).to_be_visible(timeout=2 * MINUTE)
    done, sha, current = answer.inner_text().split()[2:]
    assert done == "True" and current == "True", answer.inner_text()    # finished, and the picture is of the state now
    page.wait_for_function(f"async img => ({SHA256})(img).then(s => s === '{sha}')", arg=plot.element_handle(),
                           timeout=MINUTE)


def pressed(button):
    "A toggle button's background: a pressed one looks different from the others."
    return button.evaluate("b => getComputedStyle(b).backgroundColor")


def narrow(page, panel):
    "At 700 px the sliders keep their values in view and no button text is cut."
    page.set_viewport_size({"width": 700, "height": 1000})
    panel.scroll_into_view_if_needed()
    width, cut = page.evaluate("document.documentElement.clientWidth"), []
    for label in ("batch size", "block size", "max steps", "learning rate"):
        s = slider(panel, label)
        value = s.get_by_text(reading(s), exact=True)
        box = value.bounding_box()
        if not value.is_visible() or box is None or box["width"] == 0 or box["x"] + box["width"] > width:
            cut.append(f"{label} reads {reading(s)!r} out of view")
    for button in panel.get_by_role("button").all():
        if button.evaluate("b => b.scrollWidth > b.clientWidth + 1"): cut.append(f"button {button.inner_text()!r}")
    panel.screenshot(path=str(ARTIFACTS / "panel-700px.png"))
    assert cut == [], cut
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_panel_in_a_real_browser(lab):
    port, cells = lab
    ARTIFACTS.mkdir(exist_ok=True)
    t_start = time.perf_counter()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"http://127.0.0.1:{port}/lab/tree/03a_panel.ipynb?token={TOKEN}")
            expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=MINUTE)   # the kernel is up
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            expect(page.get_by_text(f"[{cells}]:", exact=True)).to_be_visible(timeout=3 * MINUTE)  # the last cell ran
            train = page.get_by_role("button", name="Train")
            panel = train.locator("xpath=ancestor::div[.//img][1]")    # the box around the Train button and the plot
            plot, block = panel.get_by_role("img"), slider(panel, "block size")
            panel.scroll_into_view_if_needed()
            expect(block).to_contain_text("256")                        # the widgets are drawn a moment after the cell ran
            assert reading(block) == "256"
            excess, loss = (panel.get_by_role("button", name=v, exact=True) for v in ("excess", "loss"))
            steps_axis = panel.get_by_role("button", name="steps", exact=True)   # pressed: the x-axis is steps
            assert pressed(excess) == pressed(steps_axis) != pressed(loss)       # the notebook switched to excess
            before = plot.get_attribute("src")
            panel.get_by_role("button", name="Clear runs").click()     # the comparison's short runs leave the plot
            expect(plot).not_to_have_attribute("src", before)
            block.get_by_role("slider").focus()
            page.keyboard.press("ArrowLeft")                            # block 256 -> 128
            expect(block).to_contain_text("128")
            steps = slider(panel, "max steps")
            steps.get_by_role("slider").focus()
            for _ in range(5): page.keyboard.press("ArrowRight")        # 40 -> 50, 100, 150, 200, 300: a real run
            expect(steps).to_contain_text("300")
            # the readout moves before the kernel has the value: wait for the kernel's word, the Train button's tooltip
            expect(train).to_have_attribute("title", re.compile("block 128, 300 steps"), timeout=30_000)
            before = plot.get_attribute("src")
            train.click()
            text = status(panel, r"— done: excess")
            excess_value = float(re.search(r"excess (\d\.\de[+-]\d+) \+- (\d\.\de[+-]\d+)", text).group(1))
            assert "run 5: batch 16 x block 128" in text and 0 < excess_value < 0.1, text
            expect(train).to_be_enabled()
            expect(plot).not_to_have_attribute("src", before)
            shows_the_panels_picture(page, plot, 1)                     # the picture with run 5 done
            panel.screenshot(path=str(ARTIFACTS / "panel-after-run.png"))
            before = plot.get_attribute("src")
            loss.click()                                                # the same runs, seen as losses
            expect(plot).not_to_have_attribute("src", before)
            shows_the_panels_picture(page, plot, 2)                     # the picture of the new view, and no later one
            assert pressed(loss) != pressed(excess)
            panel.screenshot(path=str(ARTIFACTS / "panel-loss-view.png"))
            narrow(page, panel)
            excess.click()
            # a longer second run, stopped
            steps.get_by_role("slider").focus()
            page.keyboard.press("End")
            expect(steps).to_contain_text("3000")
            expect(train).to_have_attribute("title", re.compile("3000 steps"), timeout=30_000)
            train.click()
            status(panel, r"^run 6: step \d+/3000")
            panel.get_by_role("button", name="Stop").click()
            text = status(panel, r"stopped at step \d+ of 3000")
            stopped = int(re.search(r"stopped at step (\d+) of 3000", text).group(1))
            assert 0 < stopped < 3000 and text.startswith("run 6: ")
            expect(train).to_be_enabled()
            shows_the_panels_picture(page, plot, 3)                     # the stopped run is in the picture
            panel.screenshot(path=str(ARTIFACTS / "panel-stopped.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    print(f"browser test took {time.perf_counter() - t_start:.1f} s")
