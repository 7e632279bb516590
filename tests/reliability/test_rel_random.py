"""Randomised, seeded fault schedules against the real worker: nothing lost,
nothing reordered, duplicates only where a response was lost, nothing left running."""
import pytest

from tests.support import relharness

pytestmark = pytest.mark.slow  # the real worker process, each test a second or more


# Three seeds against the 2.x Manager, one against Flamenco 3 (its edge encodes the same
# queue differently); python -m tests.reliability.report runs many more of both.
RUNS = [("v2", 1), ("v2", 2), ("v2", 3), ("v3", 1)]


@pytest.mark.parametrize("protocol, seed", RUNS)
def test_seeded_fault_schedule_loses_nothing(protocol, seed, tmp_path):
    result = relharness.run(seed, tmp_path, protocol=protocol)
    d = result.delivery
    print(f"{protocol} seed {seed}: {result.seconds}s faults {dict(result.faults)} produced {d.produced} "
          f"delivered {d.delivered} duplicates {d.duplicates} lost {d.lost} orphans {result.orphans} "
          f"longest outage {result.longest_outage}s")
    assert not result.problems, "\n".join(result.problems)
    assert not d.problems, "\n".join(d.problems)
    assert d.produced > 20 and d.lost == 0 and d.delivered == d.produced
    assert result.orphans == 0
    assert result.worker_exit == 0
    assert sum(result.faults.values()) >= 5, result.faults
