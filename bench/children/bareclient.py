"""A bare protocol client: the baseline of the per-task benchmark.

    python bench/children/bareclient.py MANAGER_URL RESULT.json

Registers, then asks for tasks and reports each with the fewest requests a
faithful worker could send (active; starting with the echo line in the log;
completed), synchronously, on one keep-alive connection, until the Manager
answers 204.  No queue, no greenlets, no subprocess: what is left of the
per-task time is the Manager's and HTTP's.
"""
import json
import sys
import time

from protoclient import registered_session


def main(url: str, out: str) -> None:
    session = registered_session(url, "bare")
    session.post(url + "sign-on", json={"supported_task_types": ["debug"], "nickname": "bare"}, timeout=30)
    done, fetch_times, first, last = 0, [], None, None
    while True:
        t0 = time.monotonic()
        answer = session.post(url + "task", timeout=30)
        fetch_times.append(time.monotonic() - t0)
        if answer.status_code == 204:
            break
        answer.raise_for_status()
        task = answer.json()
        first = first or t0
        message = task["commands"][0]["settings"].get("message", "")
        base = f"{url}tasks/{task['_id']}/update"
        for body in ({"task_status": "active", "activity": "task started"},
                     {"activity": "starting echo", "current_command_idx": 0, "command_progress_percentage": 0,
                      "task_progress_percentage": 0, "log": f"2000-01-01T00:00:00.000000Z: {message}"},
                     {"task_status": "completed", "activity": "Task completed", "command_progress_percentage": 100,
                      "task_progress_percentage": 100}):
            session.post(base, json=body, timeout=30).raise_for_status()
        done += 1
        last = time.monotonic()
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"tasks": done, "first": first, "last": last, "fetch_times": fetch_times}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
