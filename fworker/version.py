"""The version of this worker, in a module of its own so that any layer can name it
without importing the package root (which re-exports it as ``fworker.__version__``);
setup.py reads it from here."""

__version__ = "0.1.0"
