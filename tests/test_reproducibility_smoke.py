"""nb-smoke --check-outputs, --repeat and the determinism lint (issue 7, items 1-3)."""

from __future__ import annotations

import json

import nbformat
import pytest
from helpers import make_notebook, run_cli, smoke_json
from nbclient import NotebookClient

from jupyter_repro.determinism import probable_cause, scan_notebook
from jupyter_repro.outputs import compare_cell_outputs


def executed(path, *cells, **kw):
    """Write a notebook and run it in a real kernel, saving its outputs (as a user would)."""
    make_notebook(path, *cells, **kw)
    nb = nbformat.read(path, 4)
    NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    nbformat.write(nb, path)
    return path


# -- --check-outputs ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["script", "kernel"])
def test_unchanged_notebook_reproduces_its_saved_outputs(tmp_path, mode):
    path = executed(
        tmp_path / "ok.ipynb",
        "import numpy as np\nnp.random.seed(0)\nx = np.random.rand(3)\nprint(x.round(4))",
        "class Thing:\n    pass\nThing()",  # memory address differs on every run
        "%time total = sum(range(1000))",  # timing output differs on every run
        "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
        "%matplotlib inline\nplt.plot([1, 3, 2])\nplt.show()",
        "{'total': total}",
    )
    proc = run_cli("nb-smoke", path, "--check-outputs", "--mode", mode)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("mode", ["script", "kernel"])
def test_changed_output_is_reported_per_cell_with_a_line_diff(tmp_path, mode):
    path = executed(tmp_path / "nb.ipynb", "print('alpha')\nprint('beta')", "print(1 + 1)")
    nb = nbformat.read(path, 4)
    nb.cells[0].outputs[0]["text"] = "alpha\ngamma\n"
    nb.cells[1].execution_count = 99  # counts never count
    nbformat.write(nb, path)
    proc, report = smoke_json(tmp_path, path, "--check-outputs", "--mode", mode)
    entry = report["notebooks"][0]
    assert proc.returncode == 1 and entry["status"] == "failed"
    assert [d["cell_index"] for d in entry["output_differences"]] == [0]
    diff = entry["output_differences"][0]["text_diff"]
    assert "-gamma" in diff and "+beta" in diff and " alpha" in diff
    assert "outputs differ from the saved notebook in cell(s) 0" in proc.stdout


def test_nbval_tags_comments_and_sanitizer_files_are_honoured(tmp_path):
    path = executed(
        tmp_path / "nb.ipynb",
        ("import time\nprint(time.time())", ["nbval-ignore-output"]),
        "# NBVAL_IGNORE_OUTPUT\nimport random\nprint(random.random())",
        ("print(open(__import__('os').devnull).name)", ["nbval-skip"]),
        "print('run id: ' + __import__('uuid').uuid4().hex)",
    )
    nb = nbformat.read(path, 4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="changed\n")]
    nbformat.write(nb, path)
    proc, report = smoke_json(tmp_path, path, "--check-outputs")
    assert [d["cell_index"] for d in report["notebooks"][0]["output_differences"]] == [3]
    sanitizer = tmp_path / "sanitize.cfg"
    sanitizer.write_text("[regex1]\nregex: run id: [0-9a-f]{32}\nreplace: run id: RUNID\n")
    proc = run_cli("nb-smoke", path, "--check-outputs", "--sanitize-with", sanitizer)
    assert proc.returncode == 0, proc.stdout


def test_changed_images_are_compared_by_hash_and_written_when_asked(tmp_path):
    path = executed(
        tmp_path / "plot.ipynb",
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
    )
    nb = nbformat.read(path, 4)
    saved_png = nb.cells[0].outputs[0]["data"]["image/png"]
    nb.cells[0].source = nb.cells[0].source.replace("[1, 2, 3]", "[3, 2, 1]")
    nbformat.write(nb, path)
    report_path = tmp_path / "out" / "report.json"
    proc = run_cli("nb-smoke", path, "--check-outputs", "--json", report_path, "--save-images")
    assert proc.returncode == 1
    difference = json.loads(report_path.read_text())["notebooks"][0]["output_differences"][0]
    (image,) = difference["images"]
    assert image["mimetype"] == "image/png"
    assert image["reference_sha256"] != image["fresh_sha256"]
    folder = tmp_path / "out" / "report-images"
    (saved,) = folder.glob("*plot-cell0-0-saved.png")
    (fresh,) = folder.glob("*plot-cell0-0-fresh.png")
    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fresh.exists()
    import base64
    import hashlib

    assert hashlib.sha256(base64.b64decode(saved_png)).hexdigest() == image["reference_sha256"]
    assert hashlib.sha256(fresh.read_bytes()).hexdigest() == image["fresh_sha256"]


def test_compare_ignores_addresses_and_counts_but_not_values():
    ref = [{"output_type": "execute_result", "execution_count": 3,
            "data": {"text/plain": "<Foo at 0x7f3a12345678>"}, "metadata": {}}]  # fmt: skip
    same = [{"output_type": "execute_result", "execution_count": 9,
             "data": {"text/plain": "<Foo at 0x7f0000abcdef>"}, "metadata": {}}]  # fmt: skip
    other = [{"output_type": "execute_result", "execution_count": 3,
              "data": {"text/plain": "<Bar at 0x7f3a12345678>"}, "metadata": {}}]  # fmt: skip
    assert compare_cell_outputs(0, ref, same) is None
    assert compare_cell_outputs(0, ref, other) is not None


# -- --repeat ------------------------------------------------------------------------------
def test_repeat_names_the_first_nondeterministic_cell_and_its_rng(tmp_path, nb):
    path = nb(
        "unseeded.ipynb",
        "import numpy as np",
        "print('stable')",
        "weights = np.random.rand(4)\nprint(weights.round(4))",
        "print((weights * 2).round(4))",  # inherits the randomness of cell 2
    )
    proc, report = smoke_json(tmp_path, path, "--repeat", "3", "-j", "2")
    entry = report["notebooks"][0]
    assert proc.returncode == 1
    cells = [n["cell_index"] for n in entry["nondeterministic"]]
    assert cells[0] == 2 and 1 not in cells
    assert "numpy.random.rand" in entry["nondeterministic"][0]["cause"]
    assert "from cell 2 on" in proc.stdout and "numpy.random.rand" in proc.stdout


def test_repeat_passes_a_seeded_notebook_and_ignores_sanitized_timing(tmp_path, nb):
    path = nb(
        "seeded.ipynb",
        "import numpy as np\nrng = np.random.default_rng(42)",
        "print(rng.normal(size=3).round(4))",
        "%time s = sum(range(10**5))",
        "object()",
    )
    proc = run_cli("nb-smoke", path, "--repeat", "3")
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("import datetime\nprint(datetime.datetime.now())", "datetime.datetime.now"),
        (
            "for s in {'apple', 'pear', 'plum', 'fig', 'kiwi', 'lime'}:\n    print(s)",
            "iterates a set",
        ),
        ("import uuid\nprint(uuid.uuid4())", "uuid.uuid4"),
    ],
)
def test_repeat_names_clock_and_ordering_causes(tmp_path, nb, code, cause):
    path = nb("n.ipynb", "x = 1", code)
    _proc, report = smoke_json(tmp_path, path, "--repeat", "4", "-j", "2")
    found = report["notebooks"][0]["nondeterministic"]
    assert found and found[0]["cell_index"] == 1
    assert cause in found[0]["cause"]


def test_repeat_reports_a_flaky_failure(tmp_path, nb):
    marker = tmp_path / "first-run-only"
    # Exactly one run can create the marker; every other run fails.
    path = nb(
        "flaky.ipynb", f"import os\nos.close(os.open({str(marker)!r}, os.O_CREAT | os.O_EXCL))"
    )
    proc, report = smoke_json(tmp_path, path, "--repeat", "3", "-j", "2")
    entry = report["notebooks"][0]
    assert proc.returncode == 1 and entry["status"] == "failed"
    assert entry["failure"]["ename"] == "FileExistsError"
    assert run_cli("nb-smoke", path).returncode == 1  # the marker exists now: plain run fails


# -- lint: unseeded randomness and pickles --------------------------------------------------
def test_lint_warns_on_unseeded_generators_with_cell_and_call(tmp_path):
    path = make_notebook(
        tmp_path / "n.ipynb",
        "import random\nimport numpy as np\nfrom sklearn.model_selection import train_test_split",
        "rng = np.random.default_rng()",
        "random.seed(1)\nx = random.random()",
        "split = train_test_split([1, 2, 3, 4], test_size=0.5)",
        "np.random.seed(0)\nsplit = train_test_split([1, 2, 3, 4], test_size=0.5)",
    )
    proc, report = smoke_json(tmp_path, path, "--lint-only")
    findings = [
        (f["verdict"], f["cell_index"], f["names"][0]) for f in report["notebooks"][0]["findings"]
    ]
    assert findings == [
        ("unseeded_random", 1, "numpy.random.default_rng"),
        ("unseeded_random", 3, "train_test_split"),
    ]
    assert "numpy.random.default_rng() is created without a seed" in proc.stdout


def test_lint_warns_on_pickles_the_notebook_did_not_write(tmp_path):
    path = make_notebook(
        tmp_path / "n.ipynb",
        "import pickle, joblib",
        "model = pickle.load(open('downloaded.pkl', 'rb'))",
        "joblib.dump(model, 'mine.joblib')\nagain = joblib.load('mine.joblib')",
    )
    _proc, report = smoke_json(tmp_path, path, "--lint-only")
    findings = [(f["verdict"], f["cell_index"]) for f in report["notebooks"][0]["findings"]]
    assert findings == [("untrusted_pickle", 1)]
    message = report["notebooks"][0]["findings"][0]["message"]
    assert "downloaded.pkl" in message and "checksum" in message


def test_probable_cause_prefers_the_cell_itself_then_earlier_rngs():
    sources = scan_notebook(
        [(0, "import random\nimport time"), (1, "a = random.random()"), (2, "t = time.time()")]
    )
    assert "random.random" in probable_cause(sources, 1)
    assert "time.time" in probable_cause(sources, 2)
    assert "nothing recognisable" in probable_cause(sources, 0)


# -- regressions found in review -------------------------------------------------------------
def test_repeat_of_a_notebook_that_writes_files_is_not_a_false_alarm(tmp_path, nb):
    path = nb(
        "writes.ipynb",
        "import os, time\nif os.path.exists('out.txt'):\n    os.remove('out.txt')\ntime.sleep(0.5)",
        "open('out.txt', 'x').write('done')",
    )
    proc = run_cli("nb-smoke", path, "--repeat", "3", "-j", "3")
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("mode", ["script", "kernel"])
def test_warnings_and_clear_output_compare_equal(tmp_path, mode):
    path = executed(
        tmp_path / "w.ipynb",
        "import warnings\nwarnings.warn('careful')",
        "from IPython.display import clear_output\nfor i in range(3):\n"
        "    clear_output(wait=True)\n    print('step', i)",
    )
    proc = run_cli("nb-smoke", path, "--check-outputs", "--mode", mode)
    assert proc.returncode == 0, proc.stdout
    proc = run_cli("nb-smoke", path, "--repeat", "2", "--mode", mode)
    assert proc.returncode == 0, proc.stdout


def test_save_images_writes_the_image_that_differs_under_a_unique_name(tmp_path):
    plots = []
    for folder in ("ia", "ib"):
        (tmp_path / folder).mkdir()
        plots.append(
            executed(
                tmp_path / folder / "plot.ipynb",
                "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                "plt.plot([0, 0])\nplt.show()\nplt.plot([1, 2, 3])\nplt.show()",
            )
        )
    for path in plots:
        nb_ = nbformat.read(path, 4)
        nb_.cells[0].source = nb_.cells[0].source.replace("[1, 2, 3]", "[3, 2, 1]")
        nbformat.write(nb_, path)
    report = tmp_path / "r.json"
    proc = run_cli(
        "nb-smoke", *plots, "--check-outputs", "--json", report, "--save-images", cwd=tmp_path
    )
    assert proc.returncode == 1
    for entry in json.loads(report.read_text())["notebooks"]:
        (image,) = entry["output_differences"][0]["images"]
        assert image["position"] == 1  # the first plot did not change
    names = sorted(p.name for p in (tmp_path / "r-images").iterdir())
    assert len(names) == 4 and all("cell0-1" in n for n in names)
    assert any("ia_plot-" in n for n in names) and any("ib_plot-" in n for n in names)


def test_pickle_round_trip_through_with_open_is_trusted_and_bare_seed_is_not_a_seed():
    sources = scan_notebook(
        [
            (0, "import pickle, random\nwith open('m.pkl', 'wb') as f:\n    pickle.dump(1, f)"),
            (1, "with open('./m.pkl', 'rb') as f:\n    m = pickle.load(f)"),
            (2, "random.seed()\nx = random.random()"),
        ]
    )
    assert [(s.kind, s.cell_index) for s in sources] == [("unseeded_random", 2)]
