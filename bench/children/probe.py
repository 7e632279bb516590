"""Stand in for the Manager's port while it comes back: timestamp every
connection the moment it is accepted, answer 503, close.

    python bench/children/probe.py PORT WORKERS TIMEOUT RESULT.json

A real Manager (Python, gevent) serialises the first request of each worker
behind a PBKDF2 check, so its own timestamps bunch arrivals up; this loop
does nothing but accept, read the request head, and note the worker id of
its Basic auth.  It ends once WORKERS distinct workers were seen, or after
TIMEOUT seconds.
"""
import base64
import json
import socket
import sys
import time


def main(port: int, workers: int, timeout: float, out: str) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(512)
    server.settimeout(0.2)
    start = time.monotonic()
    print("listening", flush=True)
    first: dict[str, float] = {}
    connections = 0
    while len(first) < workers and time.monotonic() - start < timeout:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        accepted = time.monotonic()
        connections += 1
        conn.settimeout(2)
        try:
            head = conn.recv(8192).decode("latin-1")
            worker = ""
            for line in head.split("\r\n"):
                if line.lower().startswith("authorization: basic "):
                    worker = base64.b64decode(line.split()[-1]).decode().partition(":")[0]
            first.setdefault(worker or f"anonymous-{connections}", accepted)
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:
            pass
        finally:
            conn.close()
    server.close()
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"listening_at": start, "first": first, "connections": connections}, f)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
