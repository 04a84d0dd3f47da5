"""Shared fixtures; plain helpers live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_notebook


@pytest.fixture
def nb(tmp_path):
    """``nb("name.ipynb", *cells)`` writes a notebook into tmp_path and returns its path."""

    def _make(name: str, *cells, **kw) -> Path:
        return make_notebook(tmp_path / name, *cells, **kw)

    return _make
