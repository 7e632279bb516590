"""Monte Carlo of benchmark 6's restart jitter with the worker's own Backoff.

    python -m bench.jittersim [--trials 2000] [--downtime 5]

50 idle workers (asking every 0.8-1.2 s) see the Manager go down; each then
retries with ``fworker.upstream.Backoff`` (defaults: backoff_initial 1 s,
backoff_max 60 s) until it is back.  Prints how often more than 10 % of the
workers land in one 100 ms window after the restart, and how long they take
to reconnect, for the worker's policy and for a faster-growing one: the
trade-off behind the farm figures in docs/PERFORMANCE.md.  A separate
program (it imports fworker, which the benchmark process must not).
"""
from __future__ import annotations

import fworker  # noqa: F401  (monkey-patches first: bench.common imports requests)

# isort: split

import argparse
import random
import statistics

from bench import common
from fworker.upstream import Backoff


class Triple(Backoff):
    """The same jitter with a ceiling that triples instead of doubling."""

    growth = 3


def arrivals(policy: type[Backoff], workers: int, downtime: float, rng: random.Random) -> list[float]:
    """Each worker's first attempt after the restart, in seconds after it."""
    result = []
    for _ in range(workers):
        backoff = policy(1.0, 60.0, rng=rng)
        t = rng.uniform(0.0, 1.2)  # its first poll after the Manager went down, which fails
        while t < downtime:
            t += backoff.next_delay()
        result.append(t - downtime)
    return sorted(result)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jittersim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--downtime", type=float, default=5.0)
    args = parser.parse_args()
    rng = random.Random(6)
    for policy in (Backoff, Triple):
        runs = [arrivals(policy, args.workers, args.downtime, rng) for _ in range(args.trials)]
        over = sum(common.max_in_window(run, 0.1) * 10 > args.workers for run in runs) / args.trials
        every = sorted(t for run in runs for t in run)
        print(f"{policy.__name__:8s} runs over 10 % in a 100 ms window: {100 * over:4.1f} %;  reconnect after "
              f"the restart: mean {statistics.mean(every):.1f} s, p95 {every[int(0.95 * len(every))]:.1f} s")


if __name__ == "__main__":
    main()
