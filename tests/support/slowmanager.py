"""Managers that answer at their own pace, over real sockets on 127.0.0.1: one that
trickles its answer a byte at a time (never finishing, or finishing late), one that
sends a body far larger than any answer should be.  What they did is recorded, so a
test can see how far the client let them get."""
from __future__ import annotations

import socket

import gevent
from gevent.server import StreamServer


class SlowManager:
    """Answers every request (after reading its head and body) with ``head``, then
    ``body``: the first ``trickled`` bytes of the whole answer one per ``interval``
    seconds, the rest at once.  ``trickled=None``: the status line a byte at a time,
    then, instead of the rest, a header line that never ends."""

    def __init__(self, head: bytes = b"HTTP/1.1 204 No Content\r\n\r\n", body: bytes | None = b"",
                 interval: float = 0.2, trickled: int | None = None, chunk: int = 65536):
        self.answer = head + (body or b"")
        self.interval, self.trickled, self.chunk = interval, trickled, chunk
        self.requests: list[bytes] = []  # the request lines received
        self.sent = 0  # bytes written to all clients
        self.closed_by_client = 0  # connections the client closed before the answer was out
        self.server = StreamServer(("127.0.0.1", 0), self._serve)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/"

    def start(self) -> SlowManager:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(timeout=1)

    def _serve(self, sock: socket.socket, _address) -> None:
        with sock:
            try:
                while self._read_request(sock):
                    self._answer(sock)
            except OSError:  # reset or broken pipe: the client gave up on us
                self.closed_by_client += 1

    def _read_request(self, sock: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            got = sock.recv(65536)
            if not got:
                return False
            data += got
        head, rest = data.split(b"\r\n\r\n", 1)
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            rest += sock.recv(65536)
        self.requests.append(head.split(b"\r\n", 1)[0])
        return True

    def _answer(self, sock: socket.socket) -> None:
        status_line = self.answer.index(b"\r\n") + 2
        slow = status_line if self.trickled is None else self.trickled
        for i in range(min(slow, len(self.answer))):
            self._send(sock, self.answer[i:i + 1])
            gevent.sleep(self.interval)
        if self.trickled is None:
            self._send(sock, b"X-Padding: ")
            while True:  # a header line that never ends, a byte per interval
                self._send(sock, b"a")
                gevent.sleep(self.interval)
        for start in range(slow, len(self.answer), self.chunk):
            self._send(sock, self.answer[start:start + self.chunk])

    def _send(self, sock: socket.socket, data: bytes) -> None:
        sock.sendall(data)
        self.sent += len(data)


def chunked(payload: bytes, piece: int = 65536) -> bytes:
    """``payload`` in HTTP/1.1 chunked transfer encoding: no length announced."""
    out = [b"%x\r\n%s\r\n" % (len(payload[i:i + piece]), payload[i:i + piece])
           for i in range(0, len(payload), piece)]
    return b"".join(out) + b"0\r\n\r\n"
