"""Summarise a py-spy ``--format raw`` profile (collapsed stacks).

    python -m bench.profsummary bench/results/profiles/logs-0.txt [--top 25] [--grep fworker]

Prints the share of samples per function, inclusive (anywhere on the stack)
and exclusive (on top of the stack), and the same for idle samples removed
(the default: samples whose top frame is the hub waiting in epoll/select, or
an idle thread-pool thread, are dropped, and so are start-up samples, so the
shares are of the CPU the process used in its steady state).
"""
from __future__ import annotations

import argparse
import collections
import re

_IDLE = re.compile(r"\b(epoll_wait|select|poll|run \(gevent/hub\.py|wait \(gevent|sleep \(gevent|"
                   r"acquire_with_timeout \(gevent)")


def load(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _name(frame: str) -> str:
    # "function (module/path.py:123)" -> "function (path.py)"
    return re.sub(r":\d+\)$", ")", frame.strip())


def summarise(stacks, top: int, grep: str, active: bool, within: str = "", startup: bool = False) -> str:
    if not startup:  # imports and construction: not the steady state being measured
        stacks = [(s, c) for s, c in stacks if not any("_find_and_load" in f or "Worker.__init__" in f for f in s)]
    if within:
        stacks = [(s, c) for s, c in stacks if any(within in f for f in s)]
    if active:
        stacks = [(s, c) for s, c in stacks if not _IDLE.search(s[-1])]
    total = sum(c for _, c in stacks) or 1
    inclusive: collections.Counter = collections.Counter()
    exclusive: collections.Counter = collections.Counter()
    for frames, count in stacks:
        names = [_name(f) for f in frames]
        for name in set(names):
            inclusive[name] += count
        exclusive[names[-1]] += count
    out = [f"{total} samples{' (idle removed)' if active else ''}{' within ' + within if within else ''}",
           "", "inclusive:"]
    for name, count in inclusive.most_common():
        if grep and grep not in name:
            continue
        out.append(f"  {100 * count / total:5.1f}%  {name}")
        if len(out) > top + 3:
            break
    out += ["", "exclusive (self):"]
    for name, count in exclusive.most_common(top):
        out.append(f"  {100 * count / total:5.1f}%  {name}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--grep", default="")
    parser.add_argument("--all", action="store_true", help="keep idle samples")
    parser.add_argument("--within", default="", help="only stacks with a frame containing this text")
    parser.add_argument("--startup", action="store_true", help="keep start-up samples (imports, Worker.__init__)")
    args = parser.parse_args()
    print(summarise(load(args.profile), args.top, args.grep, not args.all, args.within, args.startup))


if __name__ == "__main__":
    main()
