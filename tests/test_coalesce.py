"""How the flusher coalesces queued updates into requests.

The rule: one request must leave the Manager exactly as the updates it stands
for would, sent one by one (docs/PROTOCOL.md §3.4: an update is applied as a whole; the
task keeps the newest activity and progress values, appends the log, merges
metrics).  The last test checks that against the development Manager itself.
"""
from __future__ import annotations

import pytest

from fworker.flusher import MAX_COALESCED_LOG, coalesce
from fworker.queue import QueuedUpdate
from tests.support.client import WorkerClient
from tests.support.jobs import job, task

T1, T2 = "a" * 24, "b" * 24


def items(*specs):
    return [QueuedUpdate(i + 1, task, payload) for i, (task, payload) in enumerate(specs)]


def shape(batches):
    return [(b.task_id, b.payload, b.ids) for b in batches]


def test_the_newest_step_count_wins_so_a_backlog_is_not_split_at_every_command():
    batches = coalesce(items((T1, {"log": "a", "steps_completed": 1}), (T1, {"log": "b", "steps_completed": 2}),
                             (T1, {"steps_completed": 3})))
    assert shape(batches) == [(T1, {"log": "a\nb", "steps_completed": 3}, [1, 2, 3])]


def test_logs_join_and_the_newest_value_of_a_field_wins():
    batches = coalesce(items(
        (T1, {"log": "a"}), (T1, {"log": "b"}), (T1, {"activity": "x", "log": "c"}),
        (T1, {"activity": "y", "task_progress_percentage": 10}), (T1, {"task_progress_percentage": 20}),
        (T2, {"log": "d"}), (T1, {"log": "e"}),
    ))
    assert shape(batches) == [
        (T1, {"log": "a\nb\nc", "activity": "y", "task_progress_percentage": 20}, [1, 2, 3, 4, 5]),
        (T2, {"log": "d"}, [6]),
        (T1, {"log": "e"}, [7]),
    ]


def test_a_whole_task_becomes_one_request_ending_with_its_final_status():
    batches = coalesce(items(
        (T1, {"task_status": "active", "activity": "task started"}),
        (T1, {"activity": "starting echo", "current_command_idx": 0, "command_progress_percentage": 0,
              "task_progress_percentage": 0}),
        (T1, {"log": "hello"}),
        (T1, {"activity": "finished echo", "current_command_idx": 0, "command_progress_percentage": 100,
              "task_progress_percentage": 100}),
        (T1, {"task_status": "completed", "activity": "Task completed", "metrics": {"timing": {"a": 1}}}),
    ))
    assert shape(batches) == [(T1, {
        "task_status": "completed", "activity": "Task completed", "current_command_idx": 0,
        "command_progress_percentage": 100, "task_progress_percentage": 100, "log": "hello",
        "metrics": {"timing": {"a": 1}}}, [1, 2, 3, 4, 5])]


def test_nothing_is_merged_after_a_final_status():
    batches = coalesce(items(
        (T1, {"task_status": "failed"}), (T1, {"log": "late"}),
        (T1, {"task_status": "active"}), (T1, {"task_status": "completed"}),
    ))
    assert [b.ids for b in batches] == [[1], [2, 3, 4]]


def test_fields_are_newest_wins_one_by_one_not_as_groups():
    # As the Manager applies them: a newer command index alone leaves the
    # command progress as it was (the runner always sends both together).
    batches = coalesce(items(
        (T1, {"current_command_idx": 0, "command_progress_percentage": 60}),
        (T1, {"current_command_idx": 1}),
    ))
    assert batches[0].payload == {"current_command_idx": 1, "command_progress_percentage": 60}


def test_metrics_merge_as_the_manager_merges_them():
    batches = coalesce(items(
        (T1, {"metrics": {"timing": {"fetch": 1, "render": 2}, "x": 1}}),
        (T1, {"metrics": {"timing": {"render": 5}, "y": 2}}),
    ))
    assert batches[0].payload["metrics"] == {"timing": {"fetch": 1, "render": 5}, "x": 1, "y": 2}


def test_unknown_fields_are_never_overwritten():
    batches = coalesce(items((T1, {"future": 1}), (T1, {"log": "a"}), (T1, {"future": 2})))
    assert [b.ids for b in batches] == [[1, 2], [3]]


def test_log_size_cap():
    big = "x" * (MAX_COALESCED_LOG // 2 + 1)
    batches = coalesce(items((T1, {"activity": "a"}), (T1, {"log": big}), (T1, {"log": big}),
                             (T1, {"activity": "b"})))
    assert [b.ids for b in batches] == [[1, 2], [3, 4]]
    assert all(len(b.payload.get("log", "")) <= MAX_COALESCED_LOG for b in batches)


UPDATE_RUNS = [
    [{"task_status": "active", "activity": "started"},
     {"activity": "starting render", "current_command_idx": 0, "command_progress_percentage": 0,
      "task_progress_percentage": 0},
     {"log": "line 1\nline 2"}, {"command_progress_percentage": 40, "activity": "Sample 4/10"},
     {"log": "line 3"}, {"current_command_idx": 1, "activity": "starting encode"},
     {"metrics": {"timing": {"render": 1.5}}}, {"metrics": {"timing": {"encode": 0.5}}},
     {"task_status": "completed", "activity": "Task completed", "task_progress_percentage": 100}],
    [{"task_status": "active"}, {"log": "a"}, {"task_status": "failed", "activity": "boom"}],
]


@pytest.mark.parametrize("run", UPDATE_RUNS, ids=["completed", "failed"])
def test_the_manager_ends_in_the_same_state_either_way(manager, run):
    """One by one or coalesced, over HTTP to the development Manager."""
    client = WorkerClient(manager).join()
    states = []
    for mode in ("one by one", "coalesced"):
        manager.submit_job(job(task(mode)))
        task_id = client.take()
        bodies = run if mode == "one by one" else \
            [b.payload for b in coalesce([QueuedUpdate(i, task_id, p) for i, p in enumerate(run)])]
        assert len(bodies) == (len(run) if mode == "one by one" else 1)
        for body in bodies:
            assert client.update(task_id, **body).status_code == 204
        state = manager.task(task_id)
        states.append(({key: state[key] for key in (
            "status", "activity", "task_progress_percentage", "current_command_idx",
            "command_progress_percentage", "metrics", "failed_by_workers")}, manager.task_log(task_id)))
    assert states[0] == states[1]
