"""The baseline of the outage benchmark: send the same requests as the worker,
from a bare client, synchronously on one keep-alive connection.

    python bench/children/replay.py MANAGER_URL REQUESTS.json RESULT.json

REQUESTS.json is a list of update bodies.  The client registers, takes the one
queued task and posts every body to it; RESULT.json gets the time it took.
"""
import json
import sys
import time

from protoclient import registered_session


def main(url: str, bodies_path: str, out: str) -> None:
    with open(bodies_path, encoding="utf-8") as f:
        bodies = json.load(f)
    session = registered_session(url, "replay")
    task = session.post(url + "task", timeout=30).json()
    target = f"{url}tasks/{task['_id']}/update"
    start = time.monotonic()
    for body in bodies:
        session.post(target, json=body, timeout=30).raise_for_status()
    seconds = time.monotonic() - start
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"requests": len(bodies), "seconds": seconds}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
