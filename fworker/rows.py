"""How a task update is stored: a row of the queue's ``task_updates`` table.

The payload is JSON, except its log text, which is most of an update's size and
is stored as it is, in a column of its own: encoding it into the JSON and
decoding it again cost more than storing it.  Queues written before the log had
a column of their own hold it in the JSON; ``decode_payload`` reads both.

Every text is stored as valid Unicode: a lone surrogate (a task setting may
carry one, ``"\\ud800"`` in its JSON, and a command echoes it into the log
or an activity) cannot be encoded in UTF-8, so SQLite would refuse the row,
and the Manager could not read it either.  Each one becomes U+FFFD, the
replacement character, as undecodable bytes from a child process do.
"""
from __future__ import annotations

import json
import re
import time
import typing

# Surrogate code points: in a str they are always lone (UTF-8 has no place for them).
_SURROGATE = re.compile("[\ud800-\udfff]")


def encode_row(task_id: str, payload: dict[str, typing.Any], queued_at: float | None = None) -> dict[str, typing.Any]:
    """The row of the queue's task_updates table that stores ``payload``."""
    text = payload.get("log")
    if isinstance(text, str):
        payload = {key: value for key, value in payload.items() if key != "log"}
    else:
        text = None  # not text (a caller's bug the Manager will refuse): stays in the JSON
    return {"task_id": task_id, "payload": valid_text(json.dumps(payload, ensure_ascii=False)),
            "log": None if text is None else valid_text(text),
            "queued_at": time.time() if queued_at is None else queued_at}


def valid_text(text: str) -> str:
    """``text`` with every surrogate code point replaced by U+FFFD."""
    if text.isascii():  # the usual case, and a quick test
        return text
    return _SURROGATE.sub("\ufffd", text)


def decode_payload(payload: str, text: str | None) -> dict[str, typing.Any]:
    """An update as it was pushed, from its row's ``payload`` and ``log`` columns."""
    decoded: dict[str, typing.Any] = json.loads(payload)
    if text is not None:
        decoded["log"] = text
    return decoded


def row_size(payload: str, text: str | None) -> int:
    """What a row with these ``payload`` and ``log`` columns takes, roughly: its text."""
    return len(payload) + len(text or "")
