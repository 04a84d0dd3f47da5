"""``jupyter-repro locate`` and ``jupyter-repro reproduce``: find a file's run, re-run a run."""
