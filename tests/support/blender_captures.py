"""Whole outputs of real Blender runs (Debian's Blender 3.4.1, stdout and stderr
together as the worker reads them), in tests/data/blender_output/, and what the
parser made of them.

Captured from the 320x180 cube scene of bench/b_render.py (with an image
texture whose file is missing): Cycles 16 samples, EEVEE 16 samples,
Workbench; a file linking a library that was deleted (warnings); frames that
exist already (skipped); a .blend that does not exist and a Python expression
that fails (errors).  Paths were /tmp/cap/... when captured.

``CAPTURES``: file name -> the frame count the command would know
(``--render-frame``), None where it knows none.  ``replay`` also makes
Blender 5.x's form of every line (the logger prefix) out of the same runs,
and a run whose Saved: files are no outputs (what merge scripts do).
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import pathlib

from fworker.commands import blender_output as bo

FOLDER = pathlib.Path(__file__).resolve().parent.parent / "data" / "blender_output"
RECORD = FOLDER / "recorded.json"  # what summaries() gave when it was written (write_record)

CAPTURES: dict[str, int | None] = {
    "34_cycles_40_frames.txt": 40,
    "34_eevee_6_frames.txt": 6,
    "34_workbench_4_frames.txt": 4,
    "34_missing_library_3_frames.txt": 3,
    "34_skip_existing_4_frames.txt": 4,
    "34_missing_blend.txt": 1,
    "34_python_error.txt": None,
}
LOG_PREFIX_5X = "00:00.670  render           | "


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    lines: list[str]
    frames_total: int | None
    saved_is_output: bool = True


def lines_of(name: str) -> list[str]:
    return (FOLDER / name).read_text(encoding="utf-8").splitlines()


def runs() -> list[Run]:
    """Every captured run, then its variants (5.x prefix; Saved: no output; no frame count)."""
    found = [Run(name, lines_of(name), total) for name, total in CAPTURES.items()]
    variants = []
    for run in found:
        prefixed = [LOG_PREFIX_5X + line if line.strip() else line for line in run.lines]
        variants.append(Run(f"{run.name} (5.x prefix)", prefixed, run.frames_total))
        variants.append(Run(f"{run.name} (saved is no output)", run.lines, run.frames_total, saved_is_output=False))
        variants.append(Run(f"{run.name} (no frame count)", run.lines, None))
    return found + variants


def replay(run: Run) -> list[dict[str, object]]:
    """What a fresh BlenderOutput reports for each line of ``run``, and its state at the end."""
    output = bo.BlenderOutput(run.frames_total, saved_is_output=run.saved_is_output)
    records: list[dict[str, object]] = []
    for index, line in enumerate(run.lines):
        parsed = bo.parse_line(line)
        update = output.feed(line)
        records.append({"run": run.name, "i": index, "kind": parsed.kind, "message": parsed.message,
                        "frame": parsed.frame, "status": parsed.status, "fraction": parsed.fraction,
                        "path": parsed.path, **dataclasses.asdict(update)})
    records.append({"run": run.name, "end": True, "outputs": output.outputs, "errors": output.errors,
                    "saved_count": output.saved_count, "steps": output.steps, "frames_done": output.frames_done})
    return records


def summary(run: Run) -> dict[str, object]:
    """A readable summary of ``replay(run)`` and the SHA-256 of all of it (every
    field of every parsed line and update): equal summaries, equal reports."""
    records = replay(run)
    lines = records[:-1]
    canonical = json.dumps(records, sort_keys=True, ensure_ascii=False).encode()
    return {
        "sha256": hashlib.sha256(canonical).hexdigest(),
        "lines": len(lines),
        "kinds": dict(sorted(collections.Counter(str(r["kind"]) for r in lines).items())),
        "percents": [r["percent"] for r in lines if r["percent"] is not None],
        "phases": [[r["i"], r["phase"]] for r in lines if r["phase"] is not None],
        "sticky_activities": [r["activity"] for r in lines if r["sticky"]],
        "activities": sum(1 for r in lines if r["activity"] is not None),
        **{key: value for key, value in records[-1].items() if key not in ("run", "end")},
    }


def summaries() -> dict[str, dict[str, object]]:
    return {run.name: summary(run) for run in runs()}


def write_record() -> None:
    """Rewrite RECORD from the parser as it is now (after a deliberate change of what it reports)."""
    text = json.dumps(summaries(), indent=1, ensure_ascii=False)
    RECORD.write_text(text + "\n", encoding="utf-8")
