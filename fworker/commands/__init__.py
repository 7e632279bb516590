"""Built-in commands.  Importing this package registers all of them."""
from fworker.commands import base
from fworker.commands import simple  # noqa: F401

lookup = base.lookup
registered = base.registered
