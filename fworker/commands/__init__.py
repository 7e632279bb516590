"""Built-in commands.  Importing this package registers all of them."""
from fworker.commands import base
from fworker.commands import simple, files, blender, ffmpeg  # noqa: F401  (registration)

lookup = base.lookup
registered = base.registered
