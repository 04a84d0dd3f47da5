"""The JupyterLab extension, end to end: a real ``jupyter lab`` server, a real kernel and
Debian's Chromium driven headless by Playwright.

The scenario is what a user does: open a notebook, click "Enable tracking" in the status
bar, run cells out of order, read the badge and its tooltip, delete the cell that set a
variable, then "Run stale cells in order" and see the badges go. Screenshots of each step
are saved under ``tests/output/labextension/`` (or ``$JUPYTER_REPRO_TEST_OUTPUT``) and
their paths are attached to the test (``record_property``, shown in JUnit XML and printed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
LABEXTENSION = REPO / "labextension"
EXTENSION_NAME = "jupyter-repro-labextension"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
BIN = Path(sys.executable).parent


def _jupyter(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "jupyter"), *args], capture_output=True, text=True, timeout=120, **kw
    )


def _output_dir() -> Path:
    out = Path(os.environ.get("JUPYTER_REPRO_TEST_OUTPUT", REPO / "tests" / "output"))
    path = out / "labextension"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need(condition: bool, what: str) -> None:
    """Skip on a developer machine without the browser; on CI (.ci/run installs it) fail."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing; .ci/run should have installed it")
        pytest.skip(f"{what} is not installed")


# --------------------------------------------------------------------------------------
# Packaging: what `pip install` gave us


def test_pip_install_gives_the_extension_enabled_and_ok():
    """`jupyter labextension list` (which writes to stderr) shows the prebuilt extension."""
    listing = _jupyter("labextension", "list")
    text = listing.stdout + listing.stderr
    line = next((ln for ln in text.splitlines() if EXTENSION_NAME in ln), None)
    assert line is not None, text
    clean = re.sub(r"\x1b\[[0-9;]*m", "", line)
    assert "enabled" in clean and "OK" in clean, clean


def test_jest_unit_tests_pass():
    """The TypeScript unit tests (rendering and protocol logic) run green under jest."""
    _need((LABEXTENSION / "node_modules" / "jest").is_dir(), "labextension/node_modules")
    jlpm = shutil.which("jlpm", path=str(BIN)) or shutil.which("jlpm")
    assert jlpm, "jlpm (from jupyterlab) is not on PATH"
    result = subprocess.run(
        [jlpm, "test", "--ci"], cwd=LABEXTENSION, capture_output=True, text=True, timeout=300
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    match = re.search(r"Tests:\s+(\d+) passed, (\d+) total", report)
    assert match and match.group(1) == match.group(2) and int(match.group(1)) >= 20, report


# --------------------------------------------------------------------------------------
# The browser test


@pytest.fixture
def lab(tmp_path):
    """A real `jupyter lab` on 127.0.0.1 with a token, its news pop-up turned off."""
    root = tmp_path / "root"
    root.mkdir()
    settings = tmp_path / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    token = uuid.uuid4().hex
    env = dict(os.environ)
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    for _attempt in range(3):  # a free port can be taken before the server binds it
        port = _free_port()
        log = (tmp_path / "lab.log").open("w")
        proc = subprocess.Popen(
            [str(BIN / "jupyter"), "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
             f"--port={port}", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        if _wait_for_server(proc, f"{base}/api/status?token={token}"):
            break
        log.close()
        if "is not available" not in (tmp_path / "lab.log").read_text():
            break
    else:
        pytest.fail(f"jupyter lab did not start:\n{(tmp_path / 'lab.log').read_text()}")
    if proc.poll() is not None:
        pytest.fail(f"jupyter lab did not start:\n{(tmp_path / 'lab.log').read_text()}")
    try:
        yield {"base": base, "token": token, "root": root, "log": tmp_path / "lab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_for_server(proc: subprocess.Popen, url: str, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    return False


def _write_notebook(path: Path, *sources: str) -> list[str]:
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return [c.id for c in nb.cells]


class Lab:
    """The notebook page, in the words of the scenario."""

    def __init__(self, page, shots: Path, record_property):
        self.page = page
        self.shots = shots
        self.record_property = record_property
        self.saved: list[Path] = []

    def cell(self, index: int):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(
            index
        )

    def status(self):
        return self.page.locator(".jp-repro-status")

    def wait_idle(self, timeout: float = 60_000) -> None:
        self.page.wait_for_selector(
            ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
            timeout=timeout,
        )

    def run(self, index: int, expect_count: int) -> None:
        """Select cell `index` in command mode, run it in place, wait for its new prompt."""
        self.wait_idle()
        self.cell(index).locator(".jp-InputPrompt").click()
        self.page.keyboard.press("Escape")
        self.page.keyboard.press("Control+Enter")
        prompt = self.cell(index).locator(".jp-InputArea-prompt")
        prompt.filter(has_text=f"[{expect_count}]").wait_for(timeout=60_000)
        self.wait_idle()

    def badge(self, index: int, verdict: str):
        return self.cell(index).locator(f".jp-repro-badge-{verdict}")

    def tooltip_shown(self, badge) -> str | None:
        """The tooltip text the user sees on `badge` now, or None when it is hidden."""
        return badge.evaluate(
            """el => {
                const s = getComputedStyle(el, '::after');
                if (s.visibility !== 'visible' || s.content === 'none') return null;
                return JSON.parse(s.content);
            }"""
        )

    def shot(self, name: str) -> Path:
        path = self.shots / f"{len(self.saved) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        self.saved.append(path)
        self.record_property(f"screenshot_{len(self.saved):02d}", str(path))
        print(f"screenshot: {path}")
        return path


def test_badges_tooltips_status_and_run_stale_in_real_jupyterlab(lab, record_property):
    _need(Path(CHROMIUM).exists(), CHROMIUM)
    sync_api = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else None
    if sync_api is None:
        import playwright.sync_api as sync_api

    _write_notebook(lab["root"] / "analysis.ipynb", "x = 1", "y = x * 2", "x = 5")
    shots = _output_dir()
    for old in shots.glob("*.png"):
        old.unlink()
    console_errors: list[str] = []

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on(
                "console",
                lambda m: console_errors.append(m.text) if m.type == "error" else None,
            )
            page.set_default_timeout(60_000)
            page.goto(f"{lab['base']}/lab/tree/analysis.ipynb?token={lab['token']}")
            ui = Lab(page, shots, record_property)
            ui.cell(2).wait_for()
            ui.wait_idle()

            # 1. The kernel has not loaded %track: the extension offers it, and nothing
            #    went wrong in the browser while it found out.
            sync_api.expect(ui.status()).to_have_text("%track: Enable tracking")
            assert console_errors == [], console_errors
            assert page.locator(".jp-repro-badge").count() == 0
            ui.shot("enable-offered")
            ui.status().click()
            sync_api.expect(ui.status()).to_have_text("%track: in order")

            # 2. Out of order: cell #2 re-run after cell #3 rebound x below it.
            ui.run(0, 1)
            ui.run(1, 2)
            ui.run(2, 3)
            sync_api.expect(ui.badge(1, "stale")).to_have_count(1)
            sync_api.expect(ui.status()).to_have_text("%track: 1 cell needs attention")
            ui.run(1, 4)
            order = ui.badge(1, "out_of_order")
            sync_api.expect(order).to_have_text("order")
            tooltip = order.get_attribute("data-tooltip")
            assert tooltip.startswith("Out of order: "), tooltip
            assert "reads `x` from cell #3 (In [3]) below" in tooltip, tooltip
            assert order.get_attribute("aria-label") == tooltip
            sync_api.expect(ui.badge(1, "stale")).to_have_count(0)
            assert "jp-repro-verdict-out_of_order" in ui.cell(1).get_attribute("class")
            sync_api.expect(ui.status()).to_have_text("%track: 1 cell needs attention")
            assert ui.tooltip_shown(order) is None
            order.hover()
            assert ui.tooltip_shown(order) == tooltip
            ui.shot("out-of-order-badge")

            # The status bar lists the cell; clicking the entry jumps to it.
            ui.cell(0).locator(".jp-InputPrompt").click()
            ui.status().click()
            entry = page.locator(".jp-repro-status-entry")
            sync_api.expect(entry).to_have_count(1)
            sync_api.expect(entry).to_have_text(re.compile(r"cell #2 \[4\] — out of order"))
            ui.shot("status-bar-list")
            entry.click()
            sync_api.expect(ui.cell(1)).to_have_class(re.compile(r"\bjp-mod-active\b"))

            # 3. Delete the cell that set x: cell #2 now runs on hidden state.
            ui.cell(2).locator(".jp-InputPrompt").click()
            page.keyboard.press("Escape")
            page.keyboard.press("d")
            page.keyboard.press("d")
            sync_api.expect(page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")).to_have_count(
                2
            )
            hidden = ui.badge(1, "hidden_state")
            sync_api.expect(hidden).to_have_text("hidden")
            assert "deleted cell" in hidden.get_attribute("data-tooltip")
            hidden.hover()
            assert "deleted cell" in ui.tooltip_shown(hidden)
            sync_api.expect(ui.status()).to_have_text("%track: 1 cell needs attention")
            ui.shot("hidden-state-badge")

            # 4. "Run stale cells in order" (notebook toolbar) clears every badge.
            button = page.locator(
                ".jp-NotebookPanel-toolbar [data-jp-item-name='jupyter-repro-run-stale']"
            )
            sync_api.expect(button).to_have_count(1)
            button.locator("button").first.click()
            sync_api.expect(page.locator(".jp-Notebook .jp-repro-badge")).to_have_count(0)
            sync_api.expect(ui.status()).to_have_text("%track: in order")
            prompts = [ui.cell(i).locator(".jp-InputArea-prompt").inner_text() for i in range(2)]
            assert prompts == ["[5]:", "[6]:"], prompts
            ui.shot("badges-cleared")
        finally:
            browser.close()

    assert console_errors == [], console_errors
    assert len(ui.saved) == 5 and all(p.stat().st_size > 10_000 for p in ui.saved)
