"""The version of oxian_tw (one place: the package and setup.py read it)."""

__version__ = "0.1.0"
