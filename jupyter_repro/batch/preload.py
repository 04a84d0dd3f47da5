"""Imported once by the worker pool's forkserver, so every worker starts warm.

Importing papermill, nbconvert and MLflow's sqlalchemy store (alembic, mapper set-up)
costs seconds per process; done here once, each forked worker inherits it. Importing
this module has no other effect: no store is opened and no kernel is started.
"""

from __future__ import annotations

import sys

# jsonschema (imported by nbformat and MLflow) imports rfc3987_syntax when present, which
# builds a parser grammar for about 2 s at import time, only to check the "iri" string
# format that no notebook or MLflow schema uses. A worker skips it: jsonschema treats the
# module as absent (it imports it under ``suppress(ImportError)``).
if "rfc3987_syntax" not in sys.modules:
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]


def warm() -> None:
    """Import what a run needs and build the per-process HTML exporter."""
    from ..provenance.store import quiet_mlflow

    quiet_mlflow()
    import jupyter_client.manager  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store
    import mlflow.tracking  # noqa: F401
    import nbclient  # noqa: F401
    import papermill  # noqa: F401
    import sqlalchemy.orm

    from ..provenance import mlflow_log

    sqlalchemy.orm.configure_mappers()
    import nbformat

    # the first render compiles the templates: do it here, not in a run
    mlflow_log.html_exporter().from_notebook_node(nbformat.v4.new_notebook())


warm()
