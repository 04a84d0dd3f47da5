"""Imported once by the worker pool's forkserver, so every worker starts warm.

Importing papermill, nbclient and MLflow's sqlalchemy store (alembic, mapper set-up)
costs seconds per process; done here once, each forked worker inherits it. Importing
this module has no other effect: no store is opened and no kernel is started.
"""

from __future__ import annotations

import sys

from .. import _fast_import

# jsonschema (imported by nbformat and MLflow) imports rfc3987_syntax and isoduration when
# present, only to check string formats no notebook or MLflow schema uses (about 2 s for
# rfc3987_syntax's grammar): a worker skips them as the commands do (see _fast_import).
_fast_import.skip_unused_formats()

#: Modules a worker never needs that MLflow imports only when present: ``pandas`` (about
#: a quarter of the CPU time of a worker's imports, measured with time.process_time) comes
#: in through MLflow's dataset registry, which registers ``from_pandas`` under
#: ``suppress(ImportError)`` (mlflow/data/dataset_registry.py), as mlflow-skinny runs
#: without pandas. A worker only talks to the tracking store (runs, params, tags,
#: artifacts, datasets given as plain entities); notebooks run in their own kernels,
#: which never see this.
WORKER_SKIPPED = ("pandas",)

for _name in WORKER_SKIPPED:
    sys.modules.setdefault(_name, None)  # type: ignore[assignment]


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

    from ..provenance import mlflow_log  # noqa: F401

    sqlalchemy.orm.configure_mappers()
    # not nbconvert's HTML exporter (0.7 s of CPU, on the way to the first run here): each
    # worker builds it while its first run executes (mlflow_log.warm_html_in_background)


warm()
