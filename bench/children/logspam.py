"""Print N numbered lines of 100 bytes, one write() each, timing every write.

    python bench/children/logspam.py N RESULT.json

One write per line, as a program that flushes each line does (Blender does),
so a slow reader shows up as a blocked write on a full pipe.  RESULT.json gets
the wall time from the first write to the last, and the longest write.
"""
import json
import os
import sys
import time

FILLER = "x" * 91  # 7 digits + space + 91 + newline = 100 bytes


def main(n: int, out: str) -> None:
    write, clock, fd = os.write, time.perf_counter, 1
    longest, over_10ms, over_100ms = 0.0, 0, 0
    start = clock()
    for i in range(n):
        data = f"{i:07d} {FILLER}\n".encode()
        t0 = clock()
        while data:
            data = data[write(fd, data):]
        took = clock() - t0
        if took > 0.01:
            over_10ms += 1
            if took > 0.1:
                over_100ms += 1
            if took > longest:
                longest = took
        elif took > longest:
            longest = took
    wall = clock() - start
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"lines": n, "wall_s": wall, "max_write_s": longest, "writes_over_10ms": over_10ms,
                   "writes_over_100ms": over_100ms, "end_monotonic": time.monotonic()}, f)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
