"""Text from others escaped in the worker's log, passwords in URLs masked (issue 15 case 11a, 11d)."""
import io
import logging

import pytest

from fworker import config, logsetup, safetext

FORGED = "render\n2026-01-01 00:00:00 ERROR fworker.worker: forged\x1b[2J\u2028x"


def test_printable_escapes_control_characters_only():
    assert safetext.printable(FORGED) == ("render\\n2026-01-01 00:00:00 ERROR fworker.worker: forged\\x1b[2J"
                                          "\\u2028x")
    assert safetext.printable("tab\tand café ✓") == "tab\tand café ✓"


def test_the_workers_log_escapes_every_argument(tmp_path):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logsetup.SafeFormatter(logsetup.LOG_FORMAT))
    log = logging.getLogger("fworker.test_safetext")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("task %s (%s): %d command(s)", "a" * 24, FORGED, 3)
        log.warning("stopped: %r", RuntimeError(FORGED))
        log.info("%s", safetext.Trusted("banner\n  line two"))
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("crashed %s", "x\ny")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert sum("forged" in line for line in lines) == 2
    assert not any(line.startswith("2026-01-01") for line in lines), "no forged line"
    assert "(render\\n2026-01-01 00:00:00 ERROR fworker.worker: forged\\x1b[2J\\u2028x): 3 command(s)" in lines[0]
    assert "RuntimeError('render\\n2026" in lines[1]
    assert "  line two" in lines, "the worker's own multi-line text stays as it is"
    assert any(line.endswith("crashed x\\ny") for line in lines) and "ValueError: boom" in lines


@pytest.mark.parametrize("url, shown", [
    ("http://farm:s3cret@manager:8080/", "http://farm:*****@manager:8080/"),
    ("https://[::1]:8443/", "https://[::1]:8443/"),
    ("http://u:p@[::1]/x", "http://u:*****@[::1]/x"),
    ("http://manager/", "http://manager/"),
])
def test_mask_url(url, shown):
    assert safetext.mask_url(url) == shown


def test_check_config_masks_a_password_in_manager_url():
    settings = config.load(files=[], overrides={"manager_url": "http://farm:s3cret@manager:8080/"})
    assert settings.masked()["manager_url"] == "http://farm:*****@manager:8080/"
    assert "s3cret" not in repr(settings.masked())
