"""Built-in commands.  Importing this package registers all of them."""
from fworker.commands import base, blender, ffmpeg, files, simple, simple3  # noqa: F401  (registration)

lookup = base.lookup
registered = base.registered
