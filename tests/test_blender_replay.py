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


# --- single lines against the rules as plain regex searches -------------------------------
# parse_line tries a rule's regex only on lines holding the text it needs; the rules
# themselves, tried one after the other on every line, say what it must give.


def reference_parse(line):
    text = bo._LOG_PREFIX.sub("", line, count=1).rstrip().strip()
    searches = [(bo.SAVED, bo._SAVED.search), (bo.PRODUCED, bo._PRODUCED.match), (bo.STATS, bo._FRAME.search),
                (bo.APPEND, bo._APPEND.match), (bo.READ_BLEND, bo._READ_BLEND.match),
                (bo.FRAME_TIME, bo._FRAME_TIME.match), (bo.SKIPPED, bo._SKIPPED.match),
                (bo.WARNING, bo._WARNING.match), (bo.ERROR, bo._ERROR.match), (bo.ERROR, bo._EXCEPTION.match)]
    kind, match = next(((kind, match) for kind, search in searches if (match := search(text))), (bo.OTHER, None))
    if match is None:
        return (bo.OTHER, text, None, "", None, "")
    if kind == bo.STATS:
        status = text.rsplit("|", 1)[-1].strip() if "|" in text else ""
        return (kind, text, int(match.group(1)), status, reference_fraction(status), "")
    if kind == bo.APPEND:
        return (kind, text, int(match.group(1)), "", None, "")
    if kind in (bo.SAVED, bo.PRODUCED):
        return (kind, text, None, "", None, match.group(1))
    if kind == bo.READ_BLEND:
        return (kind, text, None, "", None, match.group(1).strip().strip('"'))
    return (kind, text, None, "", None, "")


def reference_fraction(status):
    tiles = bo._TILES_DONE.search(status)
    if tiles and int(tiles.group(2)):
        return int(tiles.group(1)) / int(tiles.group(2))
    sample = bo._SAMPLE.search(status) or bo._EEVEE.search(status)
    in_tile = int(sample.group(1)) / int(sample.group(2)) if sample and int(sample.group(2)) else 0.0
    tile = bo._TILE_CURRENT.search(status)
    if tile and int(tile.group(2)):
        return (int(tile.group(1)) - 1 + in_tile) / int(tile.group(2))
    return in_tile if sample else None


AWKWARD = [
    "", " ", "\t", "Fra:", "Fra:x", "Fra: 3", "xFra:1 | Sample 1/2", "Info: Fra:7 in a message",
    "Saved:", "Saved: no quotes", "Info: Saved: '/x.png'", "Fra:1 | Saved: '/a.png'",
    "fworker: produced", "fworker: produced '/a b.exr'  ", "fworker: made '/x'",
    "Append frame", "Append frame x", "Append frame -3", "Read blend:", 'Read blend: ""',
    "Time:", "Time: x", "Time:1", " Time: 00:00.19 (Saving: 00:00.13)", "Fra:1 | Time:00:00.06",
    "skipping existing frame", "Skipping existing frames", "skipping existing frame\"/x\"",
    "Warning:", "Warning: Unable to opener", "Warning: Path '' not found", "Warning: something else",
    "Error:", "ERROR", "ERRORS", "ERROR_X y", "Error", "ValueError: x", "ValueError:  x", "ValueError: ",
    "my.mod.CustomException: boom", "1Error: x", "_Error: x", "Not an Error: x but prose",
    "Fra:1 | Rendered 0/0 Tiles, Sample 0/0", "Fra:1 | Path Tracing Tile 0/0, Sample 3/4",
    "Fra:1 | Rendering 0 / 0 samples", "Fra:1 | Sample 2/4 | Rendering 1 / 4 samples", "Fra:1 | Samples 3/4",
    "Fra:1 | Tiles, Sample", "Fra:\u0661 Mem:1M | Sample \u0662/\u0664",  # Arabic-Indic digits: \d matches them
    "00:00.1  render  |", "00:00.1 render | Fra: 2 | Sample 1/2",
    "\u2003Fra:1 | Sample 1/2", "\u00a0 12:34.5 x | Saved: '/y.png'", "²3:45 render | Saved: '/z.png'",
    "12:34 render | Error: x", "1:2 render | Fra:1", "   Fra:1 Mem:1M | Sample 1/3   ",
]


@pytest.mark.parametrize("line", AWKWARD + [prefix + line for line in AWKWARD
                                            for prefix in (blender_captures.LOG_PREFIX_5X, "  ", "x ")])
def test_awkward_lines_parse_as_the_plain_rules_say(line):
    assert tuple(bo.parse_line(line)) == reference_parse(line)


def test_every_captured_line_parses_as_the_plain_rules_say():
    differ = [line for run in RUNS.values() for line in run.lines
              if tuple(bo.parse_line(line)) != reference_parse(line)]
    assert not differ
