"""Keep command start-up fast: skip optional imports that cost 1-3 s and are never used.

nbformat imports jsonschema, which imports ``rfc3987_syntax`` (when installed, as
jupyter-events pulls it in) only to validate the ``iri`` string format, compiling a
grammar on every start: 1-3 s per command here. Notebook schemas never use that format,
so the command-line entry points (and nb-smoke's worker) mark the module as absent before
anything imports nbformat; jsonschema then simply has no ``iri`` checker. Code that
imports jupyter_repro as a library (``%load_ext``) is not affected.

:func:`skip_unused_formats` goes further for processes that never run a user's code (the
``jupyter-repro``/``nb-smoke`` command processes, batch workers): ``isoduration`` (with
``arrow`` under it, 0.2-0.4 s), imported by jsonschema only for the ``duration`` format,
which no notebook or MLflow schema uses. nb-smoke's worker runs user code in script mode,
so it skips only ``rfc3987_syntax``, as before.
"""

import sys

#: Skipped wherever this module is imported.
SKIPPED = ("rfc3987_syntax",)
#: Skipped too by :func:`skip_unused_formats` (processes that run no user code).
SKIPPED_NO_USER_CODE = ("isoduration",)

for _name in SKIPPED:
    sys.modules.setdefault(_name, None)  # type: ignore[assignment]


def skip_unused_formats() -> None:
    """Mark :data:`SKIPPED_NO_USER_CODE` as absent in this process (before jsonschema is
    imported; a module already imported stays). Only for processes that run no user
    code: a notebook's own ``import isoduration`` would fail here."""
    for name in SKIPPED_NO_USER_CODE:
        sys.modules.setdefault(name, None)  # type: ignore[assignment]
