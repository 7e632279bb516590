"""The development Manager's page as a person sees it: in a real headless browser
(Debian's chromium), which reloads it, follows its links and draws the newest image a
worker produced."""
import os
import shutil
import struct
import subprocess
import zlib

import pytest
import requests

from tests.support import jobs
from tests.support.client import WorkerClient
from tests.support.media import tool
from tests.support.waiting import wait_until

MAGENTA = (255, 0, 255)


def write_png(path, size: int, rgb: tuple[int, int, int]) -> str:
    """A solid-colour RGB PNG, written by hand: nothing to install."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                + chunk(b"IEND", b""))
    return str(path)


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    program = shutil.which("chromium") or shutil.which("chromium-browser")
    if program is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI must run this test")
        pytest.skip("chromium is not installed")
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]
    result = subprocess.run([program, *flags, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def magenta_pixels(png: str) -> int:
    raw = subprocess.run([tool("ffmpeg"), "-v", "error", "-i", png, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, timeout=60, check=True).stdout
    pixels = (raw[i:i + 3] for i in range(0, len(raw) - 2, 3))
    return sum(1 for p in pixels if p[0] > 230 and p[1] < 30 and p[2] > 230)


@pytest.fixture
def running_task(manager, tmp_path):
    """A worker running a task that reported a magenta image: (client, task id, image path)."""
    client = WorkerClient(manager, nickname="page-worker").join()
    manager.submit_job(jobs.one_task_job(jobs.echo("hi"), name="page-job"))
    task_id = client.take()
    image = write_png(tmp_path / "frame-0001.png", 64, MAGENTA)
    answer = client.call("POST", "output-produced", json={"paths": [str(tmp_path / "notes.txt"), image]})
    assert answer.status_code == 204
    return client, task_id, image


@pytest.mark.slow
def test_the_browser_shows_each_workers_task_and_the_newest_image(manager, running_task, tmp_path):
    client, task_id, _image = running_task
    dom = chromium(tmp_path, "--dump-dom", manager.url).stdout
    assert '<meta http-equiv="refresh"' in dom
    worker_row = next(row for row in dom.split("<tr>") if "page-worker" in row)
    assert f'href="/dev/view/tasks/{task_id}"' in worker_row  # its current task
    assert f'alt="newest image of task {task_id}"' in dom
    assert any(method == "GET" and path.startswith("/dev/view/outputs/") and status == 200
               for method, path, status in manager.requests_log)  # the browser fetched the picture

    shot = tmp_path / "task.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=900,2400", f"{manager.url}dev/view/tasks/{task_id}")
    assert magenta_pixels(str(shot)) > 200 * 200  # drawn at 240 px high: the picture is on the page

    # Done: the worker runs nothing, and the page says so.
    assert client.update(task_id, task_status="completed").status_code == 204
    worker_row = next(row for row in chromium(tmp_path, "--dump-dom", manager.url).stdout.split("<tr>")
                      if "page-worker" in row)
    assert "/dev/view/tasks/" not in worker_row


@pytest.mark.slow
def test_the_browser_reloads_the_page_by_itself(manager, tmp_path):
    program = shutil.which("chromium")
    if program is None:
        chromium(tmp_path)  # fails in CI, skips elsewhere
    loads = lambda: sum(1 for m, p, _s in manager.requests_log if (m, p) == ("GET", "/"))  # noqa: E731
    profile = tmp_path / "chromium-profile"
    # Without --dump-dom or --screenshot a headless browser stays on the page until stopped.
    browser = subprocess.Popen([program, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                                "--disable-sync", f"--user-data-dir={profile}", manager.url],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: loads() >= 3 or browser.poll() is not None, timeout=60, what="two reloads")
        assert loads() >= 3, browser.poll()
    finally:
        browser.terminate()
        try:
            browser.wait(30)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait(10)


def test_only_reported_images_are_served(manager, running_task, tmp_path):
    _client, _task_id, image = running_task
    seq = manager.store.outputs()[-1]["seq"]
    url = f"{manager.url}dev/view/outputs/{seq}"
    answer = requests.get(f"{url}/1", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
    with open(image, "rb") as f:
        assert answer.content == f.read()
    assert requests.get(f"{url}/0", timeout=10).status_code == 404  # reported, but not an image
    assert requests.get(f"{url}/2", timeout=10).status_code == 404
    assert requests.get(f"{manager.url}dev/view/outputs/{seq + 1}/0", timeout=10).status_code == 404
    assert requests.get(f"{url}/..%2F..%2Fetc%2Fpasswd", timeout=10).status_code == 404
    os.unlink(image)
    assert requests.get(f"{url}/1", timeout=10).status_code == 404  # gone: said, not a crash
