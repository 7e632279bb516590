"""Built-in commands.  Importing this package registers all of them."""
# simple3, files3 and media3: Flamenco 3's commands.
from fworker.commands import base, blender, ffmpeg, files, files3, media3, simple, simple3  # noqa: F401  (registration)

lookup = base.lookup
registered = base.registered
