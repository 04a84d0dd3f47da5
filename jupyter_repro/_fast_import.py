"""Keep command start-up fast: skip one optional import that costs 1-3 s.

nbformat imports jsonschema, which imports ``rfc3987_syntax`` (when installed, as
jupyter-events pulls it in) only to validate the ``iri`` string format, compiling a
grammar on every start: 1-3 s per command here. Notebook schemas never use that format,
so the command-line entry points (and nb-smoke's worker) mark the module as absent before
anything imports nbformat; jsonschema then simply has no ``iri`` checker. Code that
imports jupyter_repro as a library (``%load_ext``) is not affected.
"""

import sys

sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]
