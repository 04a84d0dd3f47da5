"""``jupyter-repro batch``: papermill-parameterized runs, each logged to MLflow."""
