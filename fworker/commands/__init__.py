"""Built-in commands.  Importing this package registers all of them."""
from fworker.commands import base, blender, ffmpeg, files, simple, simple3  # noqa: F401  (registration)
from fworker.commands import files3, media3  # noqa: F401  (registration: Flamenco 3)

lookup = base.lookup
registered = base.registered
