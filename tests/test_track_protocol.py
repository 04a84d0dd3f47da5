"""A minimal frontend written from ``docs/protocol.md`` alone works against a real kernel.

Everything the client uses comes out of the document: the comm target name, the example
messages it sends, and the JSON Schema every message in both directions must satisfy.
Nothing is imported from ``jupyter_repro``.
"""

from __future__ import annotations

import json
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
    assert "[out_of_order]" in run.stdout
    [pushed] = [m for m in run.comm if m["type"] == "report"]
    _valid(pushed)
    assert pushed["trigger"]["cell_id"] == "b2" and pushed["trigger"]["seq"] == 2
    assert pushed["summary"]["order_source"] == "frontend"
    assert pushed["summary"]["consistent"] is False
    [finding] = pushed["findings"]
    assert finding["verdict"] == "out_of_order" and finding["names"] == ["x"]
    assert finding["cell_index"] == 1 and finding["related_cells"] == [2]
    assert [c["cell_id"] for c in pushed["cells"]] == ["b2", "c3"]
    # a notice can be silenced for one cell over the comm
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
    [error] = fe.send({"type": "set_notices", "enabled": "yes"}).comm
    assert error["type"] == "error" and error["in_reply_to"] == "set_notices"
    assert fe.send({"type": "request_report", "extra": "ignored"}).comm[0]["type"] == "report"


def test_without_the_extension_the_kernel_closes_the_comm(kernel):
    fe = kernel
    fe.execute("%unload_ext jupyter_repro")
    reply = fe.open_comm({"type": "hello"})
    assert reply.comm == []
    assert fe.comm_id in reply.closed_comms
