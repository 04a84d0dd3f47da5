"""The five coordinates of a run: code (git + notebook diff), data, config, environment,
execution. Used by ``batch`` (and ``smoke``), imports neither."""
