"""Print lines until a stop file appears (checked every 50 lines).

    python bench/children/outagechild.py plain|blender STOPFILE [ARGS...]

``plain``: numbered log lines.  ``blender``: Blender 3.4 Cycles progress
lines, which the worker's blender_render command turns into a log line, a
progress update and an activity each (extra ARGS, Blender's, are ignored).
"""
import os
import sys

STATS = "Fra:{f} Mem:9.95M (Peak 10.83M) | Time:00:00.05 | Mem:0.79M, Peak:0.79M | Scene, ViewLayer | Sample {s}/64"


def main(mode: str, stop: str) -> None:
    i = 0
    while True:
        if i % 50 == 0 and os.path.exists(stop):
            break
        if mode == "plain":
            line = f"line {i:07d}"
        else:
            line = STATS.format(f=1 + i // 64, s=1 + i % 64)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        i += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
