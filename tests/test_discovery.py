"""SSDP discovery against a responder on loopback."""

import gevent
import pytest

from fworker import discovery
from fworker.errors import Fatal


def responder(sock, answer):
    data, sender = sock.recvfrom(65536)
    assert b"M-SEARCH" in data and b"ST: urn:flamenco:manager:0" in data and b'MAN: "ssdp:discover"' in data
    sock.sendto(answer, sender)


def test_discovers_the_location_of_the_first_answer(udp):
    answer = (b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nST: urn:flamenco:manager:0\r\n"
              b"LOCATION: http://192.0.2.7:8080\r\n\r\n")
    g = gevent.spawn(responder, udp, answer)
    assert discovery.discover(5.0, udp.getsockname()) == "http://192.0.2.7:8080/"
    g.get(timeout=5)


def test_ignores_other_services_and_fails_clearly_on_silence(udp):
    other = b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:printer:1\r\nLOCATION: http://printer/\r\n\r\n"
    g = gevent.spawn(responder, udp, other)
    with pytest.raises(Fatal, match="no Flamenco Manager answered"):
        discovery.discover(0.5, udp.getsockname())
    g.get(timeout=5)


@pytest.mark.parametrize("data, expected", [
    (b"HTTP/1.1 200 OK\nST: urn:flamenco:manager:0\nLocation: http://m:1/\n\n", "http://m:1/"),
    (b"NOTIFY * HTTP/1.1\r\nLOCATION: http://x/\r\n\r\n", None),
    (b"HTTP/1.1 200 OK\r\nST: urn:flamenco:manager:0\r\n\r\n", None),
    (b"\xff\xfe garbage", None),
])
def test_parse_response(data, expected):
    assert discovery.parse_response(data) == expected


def test_a_v2_and_a_v3_manager_both_answer_and_forced_v3_skips_the_2x_one(udp, make_manager, make_manager3):
    """Both generations answer the same search; /api/v3/version tells them apart."""
    from fworker import config, wiring

    two, three = make_manager("m2.sqlite"), make_manager3()

    def answers(sock):
        _data, sender = sock.recvfrom(65536)
        for url in (two.url, three.url):
            sock.sendto(f"HTTP/1.1 200 OK\r\nST: urn:flamenco:manager:0\r\nLOCATION: {url}\r\n\r\n".encode(), sender)

    def found(protocol):
        g = gevent.spawn(answers, udp)
        settings = config.load(files=[], overrides={"manager_protocol": protocol})
        url = discovery.discover(10.0, udp.getsockname(), accept=lambda u: wiring.confirm_candidate(settings, u))
        g.get(timeout=5)
        return url.rstrip("/")

    assert found("v3") == three.url.rstrip("/")
    assert found("auto") == two.url.rstrip("/"), "auto takes the first answer, whichever generation"
    assert three.invalid_requests() == []
