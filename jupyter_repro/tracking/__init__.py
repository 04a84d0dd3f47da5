"""Kernel side of ``%track``: record what runs, judge the notebook's state as it changes.

Modules: :mod:`.record` (the JSONL execution record), :mod:`.tracker` (before/after each
cell, no IPython), :mod:`.judge` (pure verdicts), :mod:`.order` (where the notebook's
cell order comes from), :mod:`.comm` (the frontend protocol, ``docs/protocol.md``),
:mod:`.export` (what really ran, as a script or a notebook), :mod:`.magic` (``%track``).
"""
