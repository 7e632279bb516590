"""The HTTP server: gevent's pywsgi with TCP_NODELAY on every connection.

Without TCP_NODELAY, Nagle's algorithm and the client's delayed ACK make each
keep-alive request from one client take ~44 ms (FIELD-NOTES); with it ~1.5 ms.

Handlers run in a pool, so that stopping the server also ends the greenlets
serving idle keep-alive connections: a stopped Manager must look stopped to
a worker, not keep answering on an old connection.
"""
import logging
import socket
import typing

import gevent.pool
from gevent import pywsgi

from .web import WSGIApp

logger = logging.getLogger(__name__)


class NoDelayWSGIServer(pywsgi.WSGIServer):
    """pywsgi.WSGIServer that disables Nagle's algorithm on accepted sockets."""

    # address: gevent's stub says str, but the server passes the peer's (host, port).
    def handle(self, sock: socket.socket, address: typing.Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as ex:  # e.g. a Unix socket: nothing to tune
            logger.debug("Could not set TCP_NODELAY for %s: %s", address, ex)
        super().handle(sock, address)


def make_server(host: str, port: int, app: WSGIApp) -> NoDelayWSGIServer:
    """A server for app, bound to (host, port) once started; access log off,
    errors to this module's logger rather than to stderr."""
    return NoDelayWSGIServer((host, port), app, spawn=gevent.pool.Pool(),
                             log=None, error_log=logger)
