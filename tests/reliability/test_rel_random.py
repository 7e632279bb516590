"""Randomised, seeded fault schedules against the real worker: nothing lost,
nothing reordered, duplicates only where a response was lost, nothing left running."""
import pytest

from tests.support import relharness

pytestmark = pytest.mark.slow  # the real worker process, each test a second or more


SEEDS = [1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_seeded_fault_schedule_loses_nothing(seed, tmp_path):
    result = relharness.run(seed, tmp_path)
    d = result.delivery
    print(f"seed {seed}: {result.seconds}s faults {dict(result.faults)} produced {d.produced} "
          f"delivered {d.delivered} duplicates {d.duplicates} lost {d.lost} orphans {result.orphans} "
          f"longest outage {result.longest_outage}s")
    assert not result.problems, "\n".join(result.problems)
    assert not d.problems, "\n".join(d.problems)
    assert d.produced > 20 and d.lost == 0 and d.delivered == d.produced
    assert result.orphans == 0
    assert result.worker_exit == 0
    assert sum(result.faults.values()) >= 5, result.faults
