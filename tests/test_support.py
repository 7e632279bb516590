"""The helpers the other tests rely on, where a mistake would hide failures."""
import pytest

from tests.support.jobs import counted, counter, job, one_task_job, task
from tests.support.waiting import wait_until


def test_wait_until_returns_the_value_and_names_what_timed_out():
    assert wait_until(lambda: 42) == 42
    with pytest.raises(AssertionError, match="never_true"):
        wait_until(lambda: "never_true" == "", timeout=0.05)
    with pytest.raises(AssertionError, match="the thing we wanted"):
        wait_until(lambda: None, timeout=0.05, what="the thing we wanted")


def test_the_job_builder_makes_valid_jobs(manager):
    ids = manager.submit_job(job(task("a"), task("b", [counter(3)], parents=["a"]), name="built"))
    assert [t["name"] for t in manager.tasks(ids["job_id"])] == ["a", "b"]
    assert manager.job(ids["job_id"])["name"] == "built"
    doc = one_task_job(counter(2), task_type="other")
    assert [t["task_type"] for t in doc["tasks"]] == ["other"]


def test_counted_reads_counter_lines_with_and_without_padding():
    log = "2026-01-01T00:00:00Z: count 0\n2026-01-01T00:00:00Z: count 1 ppp\nother line"
    assert counted(log) == [0, 1]
