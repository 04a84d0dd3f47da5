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
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest
from helpers import free_port
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
def server(tmp_path):
    """``server(app="lab", settings={...})``: a real `jupyter lab` (or `jupyter notebook`)
    on 127.0.0.1 with a token and a settings folder of its own, news pop-up turned off."""
    procs: list[tuple[subprocess.Popen, object]] = []

    def start(
        app: str = "lab", settings: dict[str, dict] | None = None, env_extra: dict | None = None
    ) -> dict:
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
        settings_dir = tmp_path / "settings"
        all_settings = {
            "@jupyterlab/apputils-extension/notification": {
                "fetchNews": "false",
                "checkForUpdates": False,
            },
            **(settings or {}),
        }
        for plugin, values in all_settings.items():
            package, name = plugin.rsplit("/", 1)
            (settings_dir / package).mkdir(parents=True, exist_ok=True)
            (settings_dir / package / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
        token = uuid.uuid4().hex
        env = dict(os.environ)
        env.update(
            JUPYTERLAB_SETTINGS_DIR=str(settings_dir),
            JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
            IPYTHONDIR=str(tmp_path / "ipython"),
            JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            **(env_extra or {}),
        )
        log_path = tmp_path / f"{app}.log"
        for _attempt in range(3):  # a free port can be taken before the server binds it
            port = free_port()
            log = log_path.open("w")
            proc = subprocess.Popen(
                [str(BIN / "jupyter"), app, "--no-browser", "--allow-root", "--ip=127.0.0.1",
                 f"--port={port}", f"--IdentityProvider.token={token}",
                 f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
            )  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            if _wait_for_server(proc, f"{base}/api/status?token={token}"):
                procs.append((proc, log))
                return {"base": base, "token": token, "root": root, "log": log_path}
            log.close()
            if "is not available" not in log_path.read_text():
                break
        pytest.fail(f"jupyter {app} did not start:\n{log_path.read_text()}")

    yield start
    for proc, log in procs:
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


class Page:
    """The notebook page, in the words of the scenario."""

    def __init__(self, page, expect, shots: Path, record_property):
        self.page = page
        self.expect = expect
        self.shots = shots
        self.record_property = record_property
        self.saved: list[Path] = []

    def cells(self):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")

    def cell(self, index: int):
        return self.cells().nth(index)

    def status(self):
        return self.page.locator(".jp-repro-status")

    def wait_idle(self, timeout: float = 60_000) -> None:
        self.page.wait_for_selector(
            ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
            timeout=timeout,
        )

    def select(self, index: int) -> None:
        """Select cell `index` in command mode."""
        self.cell(index).locator(".jp-InputPrompt").click()
        self.page.keyboard.press("Escape")

    def run(self, index: int, expect_count: int) -> None:
        """Run cell `index` in place (Run menu: "... and Do not Advance"), then wait for
        its new prompt and an idle kernel. Clicks, not a shortcut: a key pressed while
        JupyterLab still moves the focus can be lost."""
        self.wait_idle()
        self.select(index)
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(
            ".lm-Menu-itemLabel", has_text=re.compile(r"^Run Selected Cells? and Do not Advance$")
        ).click()
        self.expect(self.prompt(index)).to_have_text(f"[{expect_count}]:", timeout=60_000)
        self.wait_idle()

    def prompt(self, index: int):
        return self.cell(index).locator(".jp-InputArea-prompt")

    def badge(self, index: int, verdict: str):
        return self.cell(index).locator(f".jp-repro-badge-{verdict}")

    def toolbar_button(self, name: str):
        return self.page.locator(
            f".jp-NotebookPanel-toolbar [data-jp-item-name='{name}'] button"
        ).first

    def palette(self, label: str) -> None:
        """Run a command from the command palette (opened from the View menu) by label.

        The modal palette closes when the focus moves, which JupyterLab still does for a
        moment after a notebook opens: open it again until it stays open."""
        search = self.page.locator(".lm-CommandPalette-input")
        for _attempt in range(5):
            self.page.locator(".lm-MenuBar-itemLabel", has_text="View").click()
            self.page.locator(".lm-Menu-itemLabel", has_text="Activate Command Palette").click()
            try:
                search.fill(label, timeout=5_000)
                break
            except self.timeout_error:
                self.page.keyboard.press("Escape")
        self.page.locator(".lm-CommandPalette-item", has_text=label).first.click()

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


@pytest.fixture
def browser_page(request, record_property):
    """``open(url)`` -> Page in headless Debian Chromium; collects console errors."""
    _need(Path(CHROMIUM).exists(), CHROMIUM)
    try:
        import playwright.sync_api as sync_api
    except ImportError:
        _need(False, "Python Playwright")
    shots = _output_dir() / request.node.name
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    errors: list[str] = []
    sync_api.expect.set_options(timeout=45_000)  # a loaded CI machine runs kernels slowly
    failed_before = request.session.testsfailed
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pages: list[Page] = []

        def open_page(url: str) -> Page:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.set_default_timeout(60_000)
            page.goto(url)
            ui = Page(page, sync_api.expect, shots, record_property)
            ui.timeout_error = sync_api.TimeoutError
            ui.console_errors = errors
            pages.append(ui)
            return ui

        try:
            yield open_page
        finally:
            for ui in pages:
                if not ui.saved or request.session.testsfailed > failed_before:
                    ui.shot("at-the-end")
            browser.close()


def test_badges_tooltips_status_and_run_stale_in_real_jupyterlab(server, browser_page):
    lab = server("lab")
    _write_notebook(lab["root"] / "analysis.ipynb", "x = 1", "y = x * 2", "x = 5")
    ui = browser_page(f"{lab['base']}/lab/tree/analysis.ipynb?token={lab['token']}")
    page, expect = ui.page, ui.expect
    ui.cell(2).wait_for()
    ui.wait_idle()

    # 1. The kernel has not loaded %track: the extension offers it, and nothing went wrong
    #    in the browser while it found out.
    expect(ui.status()).to_have_text("%track: Enable tracking")
    assert ui.console_errors == [], ui.console_errors
    assert page.locator(".jp-repro-badge").count() == 0
    ui.shot("enable-offered")
    ui.status().click()
    expect(ui.status()).to_have_text("%track: in order")

    # 2. Run top to bottom: cell #2 read x before cell #3 below rebound it. A clean run
    #    shows the same, so its stale is information: a muted badge, nothing to attend to.
    ui.run(0, 1)
    ui.run(1, 2)
    ui.run(2, 3)
    stale = ui.badge(1, "stale")
    expect(stale).to_have_count(1)
    expect(stale).to_have_class(re.compile(r"\bjp-repro-badge-information\b"))
    assert stale.get_attribute("data-tooltip").startswith("Stale (information): ")
    assert "jp-repro-verdict-stale" not in (ui.cell(1).get_attribute("class") or "")
    expect(ui.status()).to_have_text("%track: in order")
    ui.shot("information-badge")
    # Out of order: cell #2 re-run after cell #3 rebound x below it.
    ui.run(1, 4)
    order = ui.badge(1, "out_of_order")
    expect(order).to_have_text("order")
    tooltip = order.get_attribute("data-tooltip")
    assert tooltip.startswith("Out of order: "), tooltip
    assert "reads `x` from cell #3 (In [3]) below" in tooltip, tooltip
    assert order.get_attribute("aria-label") == tooltip
    expect(ui.badge(1, "stale")).to_have_count(0)
    assert "jp-repro-verdict-out_of_order" in ui.cell(1).get_attribute("class")
    expect(ui.status()).to_have_text("%track: 1 cell needs attention")
    assert ui.tooltip_shown(order) is None
    order.hover()
    assert ui.tooltip_shown(order) == tooltip
    ui.shot("out-of-order-badge")

    # The status bar lists the cell; clicking the entry jumps to it.
    ui.select(0)
    ui.status().click()
    entry = page.locator(".jp-repro-status-entry")
    expect(entry).to_have_count(1)
    expect(entry).to_have_text(re.compile(r"cell #2 \[4\] — out of order"))
    ui.shot("status-bar-list")
    entry.click()
    expect(ui.cell(1)).to_have_class(re.compile(r"\bjp-mod-active\b"))

    # 3. Delete the cell that set x: cell #2 now runs on hidden state.
    ui.select(2)
    page.keyboard.press("d")
    page.keyboard.press("d")
    expect(ui.cells()).to_have_count(2)
    hidden = ui.badge(1, "hidden_state")
    expect(hidden).to_have_text("hidden")
    assert "deleted cell" in hidden.get_attribute("data-tooltip")
    hidden.hover()
    assert "deleted cell" in ui.tooltip_shown(hidden)
    expect(ui.status()).to_have_text("%track: 1 cell needs attention")
    ui.shot("hidden-state-badge")

    # 4. "Run stale cells in order" (notebook toolbar) clears every badge.
    ui.toolbar_button("jupyter-repro-run-stale").click()
    expect(page.locator(".jp-Notebook .jp-repro-badge")).to_have_count(0)
    expect(ui.status()).to_have_text("%track: in order")
    expect(ui.prompt(0)).to_have_text("[5]:")  # the cell above was replayed first
    expect(ui.prompt(1)).to_have_text("[6]:")
    ui.shot("badges-cleared")

    assert ui.console_errors == [], ui.console_errors
    assert len(ui.saved) == 6 and all(p.stat().st_size > 10_000 for p in ui.saved)


def test_edits_saved_verdicts_restart_and_run_all_and_what_ran(server, browser_page):
    """An edit not yet run is flagged (the `notebook` message), the optional setting
    writes verdicts into the saved file, "Restart kernel and run all to verify" comes back
    tracking and in order, and "Show what ran" opens the runs in run order."""
    lab = server(
        "lab",
        settings={"jupyter-repro-labextension/plugin": {"saveVerdictsInMetadata": True}},
    )
    path = lab["root"] / "analysis.ipynb"
    _write_notebook(path, "x = 1", "y = x * 2")
    ui = browser_page(f"{lab['base']}/lab/tree/analysis.ipynb?token={lab['token']}")
    page, expect = ui.page, ui.expect
    ui.cell(1).wait_for()
    ui.wait_idle()
    ui.palette("Enable tracking (%track)")
    expect(ui.status()).to_have_text("%track: in order")
    ui.run(0, 1)
    ui.run(1, 2)
    expect(ui.status()).to_have_text("%track: in order")

    # Edit cell #1 without running it.
    ui.cell(0).locator(".cm-content").click()
    page.keyboard.press("End")
    page.keyboard.type("0")
    page.keyboard.press("Escape")
    edited = ui.badge(0, "edited")
    expect(edited).to_have_text("edited")
    assert edited.get_attribute("data-tooltip").startswith("Edited: ")
    ui.shot("edited-badge")

    # Saved, the notebook carries the verdict under `jupyter_repro`.
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        saved = nbformat.read(path, as_version=4)
        if saved.cells[0].source == "x = 10":
            break
        time.sleep(0.3)
    assert saved.cells[0].source == "x = 10"
    assert saved.cells[0].metadata["jupyter_repro"]["verdicts"] == ["edited"]
    assert "jupyter_repro" not in saved.cells[1].metadata

    # Restart and run all: the extension turns tracking back on in the new kernel.
    ui.palette("Restart kernel and run all to verify")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    expect(ui.prompt(1)).to_have_text("[2]:", timeout=60_000)
    expect(ui.prompt(0)).to_have_text("[1]:")
    expect(ui.status()).to_have_text("%track: in order")
    expect(page.locator(".jp-Notebook .jp-repro-badge")).to_have_count(0)
    ui.shot("verified-after-restart")

    # Show what ran: a notebook of this kernel's runs, opened in a new tab.
    ui.toolbar_button("jupyter-repro-show-what-ran").click()
    expect(page.locator(".lm-TabBar-tabLabel", has_text="analysis.what-ran.ipynb")).to_have_count(1)
    ran = nbformat.read(lab["root"] / "analysis.what-ran.ipynb", as_version=4)
    assert [c.source for c in ran.cells if c.cell_type == "code"] == ["x = 10", "y = x * 2"]
    ui.shot("what-ran")
    assert ui.console_errors == [], ui.console_errors


def test_notebook7_shows_badges_after_the_user_loads_track(server, browser_page):
    """Notebook 7 (no status bar): the user types %load_ext/%track on in a cell; the
    extension notices, badges appear, and the toolbar's "Run stale" clears them."""
    try:
        import notebook  # noqa: F401
    except ImportError:
        _need(False, "Notebook 7 (pip install notebook)")
    nb7 = server("notebook")
    _write_notebook(
        nb7["root"] / "analysis.ipynb",
        "%load_ext jupyter_repro\n%track on",
        "x = 1",
        "y = x * 2",
        "x = 5",
    )
    ui = browser_page(f"{nb7['base']}/notebooks/analysis.ipynb?token={nb7['token']}")
    expect = ui.expect
    ui.cell(3).wait_for()
    ui.wait_idle()
    for index, count in [(0, 1), (1, 2), (2, 3), (3, 4), (2, 5)]:
        ui.run(index, count)
    order = ui.badge(2, "out_of_order")
    expect(order).to_have_text("order")
    assert "reads `x` from cell #4 (In [4]) below" in order.get_attribute("data-tooltip")
    order.hover()
    ui.shot("notebook7-out-of-order")
    ui.toolbar_button("jupyter-repro-run-stale").click()
    expect(ui.badge(2, "out_of_order")).to_have_count(0)
    assert ui.console_errors == [], ui.console_errors
    ui.shot("notebook7-cleared")


def _kernel_without_jupyter_repro(data_dir: Path) -> str:
    """A Python kernelspec whose kernel cannot import jupyter_repro (as when the package
    is missing from the kernel's environment); returns its display name."""
    spec = data_dir / "kernels" / "notrack"
    spec.mkdir(parents=True)
    hide = "import sys; sys.modules['jupyter_repro'] = None"
    launch = "from ipykernel import kernelapp; kernelapp.launch_new_instance()"
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-c", f"{hide}; {launch}", "-f", "{connection_file}"],
                "display_name": "Python without jupyter_repro",
                "language": "python",
            }
        )
    )
    return "Python without jupyter_repro"


def test_kernel_change_clears_badges_and_a_kernel_without_track_stays_silent(
    server, browser_page, tmp_path
):
    """Switching to a kernel that cannot load jupyter_repro drops the old kernel's badges,
    offers "Enable tracking" again, warns in plain words when that fails, and logs nothing
    to the browser console."""
    name = _kernel_without_jupyter_repro(tmp_path / "data")
    lab = server("lab", env_extra={"JUPYTER_PATH": str(tmp_path / "data")})
    _write_notebook(lab["root"] / "analysis.ipynb", "x = 1", "y = x * 2", "x = 5")
    ui = browser_page(f"{lab['base']}/lab/tree/analysis.ipynb?token={lab['token']}")
    page, expect = ui.page, ui.expect
    ui.cell(2).wait_for()
    ui.wait_idle()
    expect(ui.status()).to_have_text("%track: Enable tracking")
    ui.status().click()
    expect(ui.status()).to_have_text("%track: in order")
    for index, count in [(0, 1), (1, 2), (2, 3), (1, 4)]:
        ui.run(index, count)
    expect(ui.badge(1, "out_of_order")).to_have_count(1)

    ui.palette("Change Kernel…")
    page.locator(".jp-Dialog select").select_option(label=name)
    page.locator(".jp-Dialog .jp-mod-accept").click()
    expect(page.locator(".jp-Notebook .jp-repro-badge")).to_have_count(0)
    expect(ui.status()).to_have_text("%track: Enable tracking")
    ui.wait_idle()
    ui.status().click()
    # The warning names the kernel's own error (the magic could not be loaded).
    warning = page.locator(
        ".jp-toast-message",
        has_text=re.compile(r"%track could not be turned on in this kernel \(\w+Error: "),
    )
    expect(warning).to_have_count(1)
    ui.run(0, 1)
    expect(page.locator(".jp-Notebook .jp-repro-badge")).to_have_count(0)
    ui.shot("kernel-without-track")
    assert ui.console_errors == [], ui.console_errors
