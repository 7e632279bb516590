"""``flamenco-worker --demo``: the v3 demo end to end as a new user runs it (a
real process, the Flamenco 3 development Manager, Blender and FFmpeg), and the
choice of Manager on the command line."""
import os
import subprocess
import sys

import pytest

from fworker import cli
from tests.support.media import tool


def test_demo_names_the_manager_generation():
    parser = cli.build_parser()
    assert parser.parse_args(["--demo"]).demo == "v2"
    assert parser.parse_args(["--demo", "v3"]).demo == "v3"
    assert parser.parse_args(["--demo", "both", "-v"]).demo == "both"
    assert parser.parse_args([]).demo is None


def test_demo_refuses_an_unknown_generation(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["--demo", "v4"])
    assert exit_.value.code == 2
    assert "v4" in capsys.readouterr().err


@pytest.mark.slow
def test_v3_demo_runs_its_job_to_completion(tmp_path):
    tool("blender"), tool("ffmpeg")  # the demo's render part is tested, never skipped
    env = dict(os.environ, TMPDIR=str(tmp_path), HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "fworker", "--demo", "v3"], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Flamenco 3 development Manager at http://127.0.0.1:" in proc.stdout
    assert "fworker demo (v3): job completed." in proc.stdout
    assert "found invalid against the Flamenco 3 schemas: 0" in proc.stdout
    (workdir,) = tmp_path.glob("fworker-demo-v3-*")
    names = sorted(os.listdir(workdir / "render"))
    assert names == ["demo.mp4"] + [f"frame-000{n}.png" for n in range(1, 6)]
    for task in ("hello", "scene", "render", "video"):
        assert f"{task:<8} completed" in proc.stdout
