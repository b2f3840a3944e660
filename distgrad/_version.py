"""The version of distgrad: the one place it is written (``pyproject.toml`` reads it from here
for the package metadata; ``distgrad.__version__`` re-exports it)."""

__version__ = "0.1.0"
