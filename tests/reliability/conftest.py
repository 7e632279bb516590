"""Fixtures of the reliability tests: a small file system that really fills up."""
import os
import subprocess

import pytest


class TinyFS:
    """A tmpfs of a few hundred KB mounted on a folder (root only: mount(2))."""

    def __init__(self, path, size_kb):
        self.path = path
        self.size_kb = size_kb
        self.filler = path / ".filler"

    def fill(self) -> None:
        """Take every free byte, so that the next write fails with ENOSPC."""
        with open(self.filler, "ab", buffering=0) as f:
            for size in (65536, 4096, 64, 1):
                while True:
                    try:
                        f.write(b"\0" * size)
                    except OSError:  # ENOSPC: on to smaller pieces
                        break

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def tiny_fs(tmp_path):
    """tiny_fs(size_kb=512) -> a TinyFS mounted under tmp_path; unmounted afterwards.
    The queue really fails to write when it is full: no mock."""
    mounted = []

    def make(size_kb=512):
        path = tmp_path / f"tinyfs{len(mounted)}"
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
        mounted.append(path)
        return TinyFS(path, size_kb)

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)
        assert not os.path.ismount(path)
