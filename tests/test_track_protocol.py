"""A minimal frontend written from ``docs/protocol.md`` alone works against a real kernel.

Everything the client uses comes out of the document: the comm target name, the example
messages it sends, and the JSON Schema every message in both directions must satisfy.
Nothing is imported from ``jupyter_repro``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
from track_frontend import Frontend

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text(encoding="utf-8")


def _block_after(marker: str) -> dict:
    match = re.search(re.escape(marker) + r"\s*```json\n(.*?)\n```", DOC, re.DOTALL)
    assert match, f"{marker} not found in docs/protocol.md"
    return json.loads(match.group(1))


SCHEMA = _block_after("<!-- schema -->")
TARGET = re.search(r"\*\*Target name:\*\* `([^`]+)`", DOC).group(1)
VERSION = re.search(r"This document describes \*\*(\d+\.\d+)\*\*", DOC).group(1)
EXAMPLES = {
    name: _block_after(f"<!-- example: {name} -->")
    for name in re.findall(r"<!-- example: (\w+) -->", DOC)
}
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def _valid(message: dict) -> dict:
    errors = sorted(VALIDATOR.iter_errors(message), key=str)
    assert not errors, f"{message.get('type')}: {errors[0].message}"
    return message


def test_the_document_is_self_consistent():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert set(EXAMPLES) == {"hello", "notebook", "request_report", "set_notices", "welcome",
                             "report", "status", "error"}  # fmt: skip
    for example in EXAMPLES.values():
        _valid(example)
        assert example["protocol"] == VERSION
    assert not VALIDATOR.is_valid({"type": "notebook", "cells": [{"source": "x"}]})
    assert not VALIDATOR.is_valid({"type": "set_notices"})


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    fe = Frontend(cwd=str(tmp_path_factory.mktemp("protocol")))
    fe.execute("%load_ext jupyter_repro")
    yield fe
    fe.close()


def test_a_client_from_the_document_gets_verdicts(kernel):
    fe = kernel
    assert TARGET == "jupyter_repro.track"
    # welcome before tracking is on
    [welcome] = fe.open_comm(EXAMPLES["hello"]).comm
    assert _valid(welcome)["type"] == "welcome" and welcome["tracking"] is False
    assert fe.send(EXAMPLES["request_report"]).comm[0]["type"] == "status"
    # %track on is announced to open comms
    on = fe.execute("%track on")
    assert [_valid(m)["type"] for m in on.comm] == ["status"] and on.comm[0]["tracking"]
    # the notebook from the document's example: markdown a1, code b2 reads x, code c3 sets x
    notebook = dict(EXAMPLES["notebook"])
    notebook["cells"] = [dict(c) for c in notebook["cells"]]
    notebook["cells"][1]["source"] = ["y = ", "x + 1"]  # the list-of-lines form is allowed
    [first] = fe.send(_valid(notebook)).comm
    assert _valid(first)["type"] == "report" and first["trigger"] is None
    # run c3 then b2: b2 reads x from c3 below
    fe.execute("x = 1", "c3")
    run = fe.execute("y = x + 1", "b2")
    # a frontend is attached: its badges show verdicts, the cell output stays clean
    assert "%track" not in run.stdout
    [pushed] = [m for m in run.comm if m["type"] == "report"]
    _valid(pushed)
    assert pushed["trigger"]["cell_id"] == "b2" and pushed["trigger"]["seq"] == 2
    assert pushed["summary"]["order_source"] == "frontend"
    assert pushed["summary"]["consistent"] is False
    [finding] = pushed["findings"]
    assert finding["verdict"] == "out_of_order" and finding["names"] == ["x"]
    assert finding["cell_index"] == 1 and finding["related_cells"] == [2]
    assert [c["cell_id"] for c in pushed["cells"]] == ["b2", "c3"]
    # notices can be asked for over the comm, and silenced for one cell
    [status] = fe.send({"type": "set_notices", "protocol": VERSION, "enabled": True}).comm
    assert _valid(status)["notices"] is True
    assert "[out_of_order]" in fe.execute("y = x + 1", "b2").stdout
    [status] = fe.send(EXAMPLES["set_notices"]).comm
    assert _valid(status)["quiet_cells"] == ["b2"]
    assert "[out_of_order]" not in fe.execute("y = x + 1", "b2").stdout
    # the user moves b2 below c3: the next report is consistent
    notebook["cells"] = [notebook["cells"][0], notebook["cells"][2], notebook["cells"][1]]
    [reordered] = fe.send(notebook).comm
    assert reordered["findings"] == [] and reordered["summary"]["consistent"] is True
    assert [c["cell_id"] for c in reordered["cells"]] == ["c3", "b2"]


def test_bad_messages_get_an_error_and_the_comm_stays_usable(kernel):
    fe = kernel
    fe.open_comm({})
    [error] = fe.send({"type": "frobnicate"}).comm
    assert _valid(error)["type"] == "error" and error["in_reply_to"] == "frobnicate"
    [error] = fe.send({"type": "request_report", "protocol": "2.0"}).comm
    assert error["type"] == "error" and "2.0" in error["message"]
    [error] = fe.send({"type": "notebook", "cells": [{"source": "x"}]}).comm
    assert error["type"] == "error"
    for source in (["x = ", 1], 5, {"a": 1}):  # not a string, nor a list of strings
        [error] = fe.send({"type": "notebook", "cells": [{"id": "a", "source": source}]}).comm
        assert _valid(error)["type"] == "error" and error["in_reply_to"] == "notebook"
        assert "source must be a string" in error["message"], error["message"]
        assert not error["message"].startswith("internal error")
    [error] = fe.send({"type": "notebook", "cells": [{"id": "a", "cell_type": 3}]}).comm
    assert error["type"] == "error" and "cell_type" in error["message"]
    [error] = fe.send({"type": "set_notices", "enabled": "yes"}).comm
    assert error["type"] == "error" and error["in_reply_to"] == "set_notices"
    # a report once something was tracked (before that the reply is a status, which
    # depended on whether another test of this module ran first on this worker)
    fe.execute("%track on")
    fe.execute("tracked_here = 1", "bad-messages-cell")
    assert fe.send({"type": "request_report", "extra": "ignored"}).comm[0]["type"] == "report"


def test_without_the_extension_the_kernel_closes_the_comm(kernel):
    fe = kernel
    fe.execute("%unload_ext jupyter_repro")
    reply = fe.open_comm({"type": "hello"})
    assert reply.comm == []
    assert fe.comm_id in reply.closed_comms


# -- comm robustness, found in review (were tests/test_track_review_fixes.py) -------------
# These reach into the kernel's session with code run in the kernel (never imported here).
SESSION = "from jupyter_repro.tracking.magic import _SESSIONS as _S; _s = next(iter(_S.values()))"


def _peek(fe: Frontend, expr: str) -> str:
    """Evaluate ``expr`` in the kernel without it being tracked; its printed value."""
    reply = fe.execute(f"{SESSION}\nprint({expr})", store_history=False)
    assert reply.status == "ok", reply.stderr
    return reply.stdout.strip()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
    fe = Frontend(env=env, cwd=str(tmp_path_factory.mktemp("review_plain")))
    assert fe.execute("%load_ext jupyter_repro").status == "ok"
    fe.execute("%track on")
    yield fe
    fe.close()


def test_after_a_reset_runs_are_newer_than_the_frontends_cells(plain):
    fe = plain
    fe.open_comm({"type": "hello", "protocol": "1.0"})
    fe.execute("%track reset")
    fe.execute("a = 1", "A")
    fe.execute("b = a", "B")
    fe.send_notebook([("A", "a = 1"), ("B", "b = a")])  # the frontend's seq is now 3
    [fresh] = fe.execute("%track reset").comm  # frontends drop the old verdicts
    assert fresh["type"] == "report" and fresh["trigger"] is None
    assert [c["last_run_seq"] for c in fresh["cells"]] == [None, None]
    assert _peek(fe, "_s.order.frontend_seq") == "1"
    run = fe.execute("n = 5", "N")  # a new cell the frontend has not sent yet
    assert "internal error" not in run.stderr
    [pushed] = [m for m in run.comm if m["type"] == "report"]
    cells = {c["cell_id"]: c for c in pushed["cells"]}
    assert cells["N"]["placed"] is False and cells["N"]["last_run_seq"] == 1  # not "deleted"
    assert cells["A"]["last_run_seq"] is None


def test_a_failing_comm_handler_replies_error_and_tracking_goes_on(plain):
    fe = plain
    fe.open_comm({"type": "hello", "protocol": "1.0"})
    fe.execute(f"{SESSION}\n_s._saved_judge = _s.judge\n_s.judge = lambda *a: 1 / 0",
               store_history=False)  # fmt: skip
    reply = fe.send({"type": "request_report", "protocol": "1.0"})
    [error] = reply.comm
    assert error["type"] == "error" and error["in_reply_to"] == "request_report"
    assert error["message"].startswith("internal error in the kernel's %track")
    assert "ZeroDivisionError" in error["message"]
    fe.execute(f"{SESSION}\n_s.judge = _s._saved_judge", store_history=False)
    assert _peek(fe, "_s.enabled") == "True"
    assert fe.send({"type": "request_report"}).comm[0]["type"] == "report"
    assert [m["type"] for m in fe.execute("k = 1", "K").comm] == ["report"]


def test_closed_and_broken_comms_are_dropped(plain):
    fe = plain
    fe.open_comm({"type": "hello"})
    assert int(_peek(fe, "len(_s.channel.comms)")) >= 1
    fe.open_comm({"type": "hello"})
    closed_by_frontend = fe.comm_id
    fe.close_comm()  # ipykernel calls the comm's close callback: forgotten at once
    assert closed_by_frontend not in _peek(fe, "[c.comm_id for c in _s.channel.comms]")
    # closed on the kernel side (no callback then): dropped at the next send
    fe.execute(f"{SESSION}\n[c.close() for c in list(_s.channel.comms)]", store_history=False)
    assert fe.execute("m = 0", "M").stderr == ""
    assert _peek(fe, "len(_s.channel.comms)") == "0"
    fe.open_comm({"type": "hello"})
    fe.execute(
        f"{SESSION}\nclass _Dead:\n    def send(self, m):\n        raise OSError('gone')\n"
        "_s.channel.comms.insert(0, _Dead())",
        store_history=False,
    )
    run = fe.execute("m = 1", "M")
    assert run.stderr == "" and [m["type"] for m in run.comm] == ["report"]
    assert _peek(fe, "[type(c).__name__ for c in _s.channel.comms]") != "[]"
    assert "_Dead" not in _peek(fe, "[type(c).__name__ for c in _s.channel.comms]")
    assert _peek(fe, "_s.enabled") == "True"


