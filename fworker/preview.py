"""Rendered images as previews for a Flamenco 3 Manager, and their uploader.

The Manager takes one PNG or JPEG image per request, at most
``MAX_PREVIEW_BYTES``.  As the Go worker does, every image becomes a JPEG
(``make_preview``): a 16-bit 4K PNG is larger than the limit, the JPEG of it a
few MB.  FFmpeg converts, so every format it decodes works, EXR included
(linear light, shown through the sRGB curve); it runs as a child process with
a time limit through ``fworker.process``, so the event loop never waits for
it.  Without FFmpeg, PNG and JPEG files under the limit go as they are and
other formats are skipped.  A JPEG under the limit is never converted.

``PreviewUploader`` sends them from a greenlet of its own, knowing nothing of
HTTP: it is given ``send(data, content_type) -> HTTP status``.  Only the
newest image offered is kept; at most one upload per ``interval``.  Every
image is tried once: a preview is worth neither a queue nor a retry, the next
render brings a newer one.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
import typing

import gevent
import gevent.event

from fworker.errors import FworkerError, RetryLater

log = logging.getLogger(__name__)

MAX_PREVIEW_BYTES = 25 * 1024 * 1024  # the Manager refuses larger uploads (413)
CONVERT_TIMEOUT = 60.0  # a 4K EXR takes ~1 s; this much only on a machine busy rendering
JPEG_QUALITY = "3"  # FFmpeg's -q:v scale (2 best .. 31): about quality 85-90 of other encoders

PNG, JPEG = "image/png", "image/jpeg"
_MAGIC = {b"\x89PNG\r\n\x1a\n": PNG, b"\xff\xd8\xff": JPEG}
_EXR_MAGIC = b"\x76\x2f\x31\x01"
_SNIFF = 8


@dataclasses.dataclass(frozen=True)
class Preview:
    """An image ready to upload."""

    data: bytes = dataclasses.field(repr=False)
    content_type: str
    path: str  # the image it was made from
    converted: bool


@dataclasses.dataclass(frozen=True)
class NoPreview:
    """Why ``path`` gives no preview.  False as a truth value."""

    path: str
    reason: str

    def __bool__(self) -> bool:
        return False


def make_preview(path: str, ffmpeg: str | None, *, timeout: float = CONVERT_TIMEOUT,
                 limit: int = MAX_PREVIEW_BYTES) -> Preview | NoPreview:
    """The upload for image ``path``: a JPEG made by ``ffmpeg`` (a program
    path or name; None: no FFmpeg), or the file itself when it is a JPEG, or a
    PNG while there is no FFmpeg, under ``limit`` bytes."""
    try:
        size, head = _blocking(_size_and_head, path)
    except OSError as ex:
        return NoPreview(path, f"cannot be read: {ex.strerror or ex}")
    kind = next((ctype for magic, ctype in _MAGIC.items() if head.startswith(magic)), None)
    if kind is not None and (kind == JPEG or ffmpeg is None):
        if size > limit:
            return NoPreview(path, f"{size} bytes, over the {limit}-byte limit" +
                             ("" if ffmpeg else ", and no FFmpeg to make a JPEG of it"))
        try:
            return Preview(_blocking(_read, path, limit), kind, path, converted=False)
        except OSError as ex:
            return NoPreview(path, f"cannot be read: {ex.strerror or ex}")
    if ffmpeg is None:
        return NoPreview(path, "neither PNG nor JPEG, and no FFmpeg to convert it")
    return _convert(path, ffmpeg, exr=head.startswith(_EXR_MAGIC), timeout=timeout, limit=limit)


def jpeg_args(ffmpeg: str, path: str, out: str, *, exr: bool) -> list[str]:
    """FFmpeg's arguments to write the first image of ``path`` as JPEG ``out``."""
    # image2 with no pattern: a '%' in a file name is just a character.
    args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "image2", "-pattern_type", "none"]
    if exr:
        args += ["-apply_trc", "iec61966_2_1"]  # EXR holds linear light: show it as sRGB
    return args + ["-i", path, "-frames:v", "1", "-pix_fmt", "yuvj420p", "-q:v", JPEG_QUALITY,
                   "-f", "image2", "-c:v", "mjpeg", "-y", out]


def _convert(path: str, ffmpeg: str, *, exr: bool, timeout: float, limit: int) -> Preview | NoPreview:
    from fworker.process import ChildProcess, describe_exit  # late: imports psutil

    folder = tempfile.mkdtemp(prefix="fworker-preview-")
    out = os.path.join(folder, "preview.jpg")
    said: list[str] = []
    # Not the task's: the task's end must not stop a conversion half-way (its own time limit does).
    child = ChildProcess(jpeg_args(ffmpeg, path, out, exr=exr), grace=1.0, logger=log, task_child=False,
                         on_lines=lambda lines: said.extend(lines[:20 - len(said)]))
    timer = gevent.Timeout(timeout)
    timer.start()
    try:
        returncode = child.run()
        if returncode != 0:
            # FFmpeg's first complaint is the cause; the later ones follow from it.
            first = next((line.strip() for line in said if line.strip()), "")
            return NoPreview(path, f"FFmpeg cannot convert it ({describe_exit(returncode)}): {first[:300]}")
        size = os.path.getsize(out)
        if size > limit:
            return NoPreview(path, f"its JPEG is {size} bytes, over the {limit}-byte limit")
        return Preview(_blocking(_read, out, limit), JPEG, path, converted=True)
    except gevent.Timeout as ex:
        if ex is not timer:
            raise
        return NoPreview(path, f"FFmpeg took more than {timeout:g} s to convert it; stopped it")
    except OSError as ex:
        return NoPreview(path, f"FFmpeg cannot be run or left no JPEG: {ex.strerror or ex}")
    finally:
        timer.close()
        shutil.rmtree(folder, ignore_errors=True)


def _blocking(fn: typing.Callable[..., typing.Any], *args: typing.Any) -> typing.Any:
    """``fn(*args)`` in gevent's thread pool: the image may be on a slow network share.
    Its OSError is raised here (brought over as a value: the pool would print it)."""
    def call() -> typing.Any:
        try:
            return fn(*args), None
        except OSError as ex:
            return None, ex

    result, error = gevent.get_hub().threadpool.apply(call)
    if error is not None:
        raise error
    return result


def _size_and_head(path: str) -> tuple[int, bytes]:
    with open(path, "rb") as f:
        return os.fstat(f.fileno()).st_size, f.read(_SNIFF)


def _read(path: str, limit: int) -> bytes:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # grew since it was measured
        raise OSError(f"{path} grew past {limit} bytes while being read")
    return data


class PreviewUploader:
    """Uploads the newest offered image at most once per ``interval`` seconds
    with ``send(data, content_type) -> HTTP status``, in a greenlet of its own
    (``start()``, ``stop()``).  ``offer()`` never blocks and never raises.

    Outcomes, each final for its image: 2xx sent; 429 (the Manager is busy),
    413 and 400 (it refuses this image) dropped with a log line; ``RetryLater``
    from ``send`` (the network) dropped quietly.  ``sent`` and ``dropped``
    count them."""

    def __init__(self, send: typing.Callable[[bytes, str], int], ffmpeg: str | None, interval: float, *,
                 timeout: float = CONVERT_TIMEOUT, limit: int = MAX_PREVIEW_BYTES,
                 clock: typing.Callable[[], float] = time.monotonic):
        self._send = send
        self._ffmpeg = ffmpeg
        self._interval = interval
        self._timeout = timeout
        self._limit = limit
        self._clock = clock
        self._waiting: str | None = None
        self._wake = gevent.event.Event()
        self._stopped = gevent.event.Event()
        self._greenlet: gevent.Greenlet[..., typing.Any] | None = None
        self._last_upload: float | None = None
        self.sent = 0
        self.dropped = 0
        self.last_outcome = ""

    def start(self) -> PreviewUploader:
        if self._greenlet is None and not self._stopped.is_set():
            self._greenlet = gevent.spawn(self.run)
        return self

    def offer(self, path: str) -> None:
        """``path`` is the newest image: it replaces any image still waiting."""
        if self._stopped.is_set():
            return
        if self._waiting is not None:
            log.debug("preview %s replaced by a newer one before it was sent", self._waiting)
        self._waiting = path
        self._wake.set()

    @property
    def waiting(self) -> str | None:
        return self._waiting

    def stop(self) -> None:
        """End the greenlet, a conversion or upload under way included."""
        self._stopped.set()
        self._wake.set()
        if self._greenlet is not None:
            self._greenlet.kill(block=True)

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.run_once()
            except Exception:  # send() is another module's code: its bug must not end previews
                log.exception("preview upload failed unexpectedly; the image is dropped")
                self.dropped += 1

    def run_once(self) -> None:
        """Wait for an image and for the interval to pass, then upload it."""
        self._wake.wait()
        if self._last_upload is not None:
            # Throttled: images offered meanwhile replace each other.
            self._stopped.wait(max(0.0, self._last_upload + self._interval - self._clock()))
        if self._stopped.is_set():
            return
        self._wake.clear()
        path, self._waiting = self._waiting, None
        if path is None:
            return
        self._last_upload = self._clock()
        self.upload(path)

    def upload(self, path: str) -> None:
        """Convert and send ``path`` once; log and count the outcome."""
        preview = make_preview(path, self._ffmpeg, timeout=self._timeout, limit=self._limit)
        if isinstance(preview, NoPreview):
            # Without FFmpeg most renders (EXR) give none: not worth more than a debug line.
            self._drop(logging.INFO if self._ffmpeg else logging.DEBUG, "no preview of %s: %s", path, preview.reason)
            return
        try:
            status = self._send(preview.data, preview.content_type)
        except RetryLater as ex:
            self._drop(logging.INFO, "preview %s not sent, not retried: %s", path, ex)
            return
        except FworkerError as ex:
            self._drop(logging.WARNING, "preview %s not sent: %s", path, ex)
            return
        self._answer(path, status, preview)

    def _answer(self, path: str, status: int, preview: Preview) -> None:
        if 200 <= status < 300:
            self.sent += 1
            self.last_outcome = f"sent {path}"
            log.debug("preview %s sent (%d bytes of %s)", path, len(preview.data), preview.content_type)
        elif status == 429:
            self._drop(logging.INFO, "preview %s dropped: the Manager is busy with previews (429)", path)
        elif status in (400, 413):
            self._drop(logging.WARNING, "preview %s refused by the Manager (%d, %d bytes of %s)",
                          path, status, len(preview.data), preview.content_type)
        else:
            self._drop(logging.WARNING, "preview %s not taken: the Manager answered %d", path, status)

    def _drop(self, level: int, message: str, *args: typing.Any) -> None:
        self.dropped += 1
        self.last_outcome = message % args
        log.log(level, message, *args)
