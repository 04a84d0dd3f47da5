"""The package version, in a leaf module: anything inside the package may import it
without importing the package root (``pyproject.toml``'s hatch version reads this file)."""

__version__ = "0.1.0"
