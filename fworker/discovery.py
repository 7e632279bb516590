"""Finding the Manager with UPnP/SSDP when no manager_url is configured
(docs/PROTOCOL.md §1.5): an M-SEARCH for ``urn:flamenco:manager:0``; the
first answer's ``Location`` header is the Manager's URL."""
from __future__ import annotations

import logging
import socket
import time
import typing

from fworker.errors import Fatal

log = logging.getLogger(__name__)

SEARCH_TARGET = "urn:flamenco:manager:0"
SSDP_ADDRESS = ("239.255.255.250", 1900)


def search_request(mx: int = 3) -> bytes:
    return ("M-SEARCH * HTTP/1.1\r\n"
            f"HOST: {SSDP_ADDRESS[0]}:{SSDP_ADDRESS[1]}\r\n"
            'MAN: "ssdp:discover"\r\n'
            f"MX: {mx}\r\n"
            f"ST: {SEARCH_TARGET}\r\n\r\n").encode("ascii")


def parse_response(data: bytes) -> str | None:
    """The Location of an SSDP answer for our search target, else None."""
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    if not lines or not lines[0].upper().startswith("HTTP/1.1 200"):
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("st") not in (None, SEARCH_TARGET):
        return None
    return headers.get("location") or None


def discover(timeout: float = 5.0, target: tuple[str, int] = SSDP_ADDRESS,
             accept: typing.Callable[[str], bool] | None = None) -> str:
    """Search until an answer arrives or ``timeout`` passes (then Fatal).
    ``accept(url)``: whether a candidate will do (both Manager generations answer
    the same search; the caller asks which one it is); a refused one is skipped."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
        deadline = time.monotonic() + timeout
        log.info("no manager_url configured; searching the network for a Flamenco Manager (SSDP, %gs)", timeout)
        sock.sendto(search_request(), target)
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, sender = sock.recvfrom(65536)
            except TimeoutError:
                break
            location = parse_response(data)
            if location:
                url = location if location.endswith("/") else location + "/"
                if accept is not None and not accept(url):
                    continue
                log.info("found a Flamenco Manager at %s (answer from %s)", url, sender[0])
                return url
            log.debug("ignoring an SSDP answer from %s", sender[0])
    except OSError as ex:
        raise Fatal(f"cannot search for a Flamenco Manager with SSDP: {ex}; set manager_url") from None
    finally:
        sock.close()
    raise Fatal(f"no Flamenco Manager answered an SSDP search within {timeout:g}s; set manager_url")
