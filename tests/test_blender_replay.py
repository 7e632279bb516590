"""Whole captured Blender outputs through the parser: it reports what it reported
when the record was made (tests/data/blender_output/recorded.json), every field
of every line, so that making the parser cheaper cannot change what it says.

A deliberate change of what the parser reports regenerates the record:
    python -c "from tests.support import blender_captures as c; c.write_record()"
and the diff of recorded.json shows what changed."""
import json

import pytest

from fworker.commands import blender_output as bo
from tests.support import blender_captures

RECORDED = json.loads(blender_captures.RECORD.read_text(encoding="utf-8"))
RUNS = {run.name: run for run in blender_captures.runs()}


def test_every_run_is_recorded():
    assert sorted(RUNS) == sorted(RECORDED)
    assert sum(RECORDED[name]["lines"] for name in blender_captures.CAPTURES) == 2047


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_captured_run_reports_what_it_reported(name):
    now = blender_captures.summary(RUNS[name])
    recorded = RECORDED[name]
    # The readable parts first, so that a difference shows where it is.
    for key in recorded:
        if key != "sha256":
            assert now[key] == recorded[key], key
    assert now["sha256"] == recorded["sha256"], "same summary, but some line parses or reports differently"


def test_the_captures_hold_every_kind_of_line():
    kinds = set()
    for name in blender_captures.CAPTURES:
        kinds |= set(RECORDED[name]["kinds"])
    assert kinds >= {bo.STATS, bo.SAVED, bo.READ_BLEND, bo.WARNING, bo.ERROR, bo.FRAME_TIME, bo.SKIPPED, bo.OTHER}
    cycles = RECORDED["34_cycles_40_frames.txt"]
    assert len(cycles["outputs"]) == cycles["saved_count"] == cycles["steps"] == 40
    assert cycles["percents"][-1] == 100
    assert RECORDED["34_missing_library_3_frames.txt"]["sticky_activities"][0].startswith(
        "Blender: Warning: Unable to open '/tmp/cap/lib.blend'")
    assert RECORDED["34_python_error.txt"]["errors"][-1].startswith("Error: script failed")
