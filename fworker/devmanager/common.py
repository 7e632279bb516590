"""Small helpers shared by the development Manager's modules: ids, timestamps,
the error raised for unknown workers, jobs and tasks, and the type of a row."""
import datetime
import re
import secrets
import typing

# A MongoDB ObjectId printed as hex: the id format of every Flamenco 2.x document.
_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")

# A stored row or a JSON object, as the Manager passes both around: plain dicts
# whose values are whatever a column or a JSON document holds (str, int, bool,
# None, and lists and dicts decoded from JSON columns).
Row = dict[str, typing.Any]


class NotFound(LookupError):
    """A worker, job or task id that the Manager does not know."""


def found(row: Row | None, what: str) -> Row:
    """row, or NotFound naming what was looked for ("Task 1234...")."""
    if row is None:
        raise NotFound(f"{what} is unknown.")
    return row


def new_id() -> str:
    """A fresh 24-character lowercase hex id.

    Real ObjectIds start with a timestamp; ours are purely random, so the
    scheduler orders by an explicit sequence number instead of by id.
    """
    return secrets.token_hex(12)


def is_object_id(text: str) -> bool:
    """Whether text has the shape of an ObjectId (24 hex digits, any case)."""
    return bool(_OBJECT_ID.fullmatch(text))


def utc_timestamp() -> str:
    """Wall-clock time for display and records, ISO 8601 in UTC.

    Never used to measure durations: those use the monotonic clock."""
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
