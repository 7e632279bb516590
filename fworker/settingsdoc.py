"""The settings table (``fworker.config.SETTINGS``) as documentation: the sample
configuration ``etc/flamenco-worker.cfg`` and the key list at the end of ``--help``.

    python -m fworker.settingsdoc > etc/flamenco-worker.cfg

A test keeps the file equal to what this prints.
"""
from __future__ import annotations

import textwrap

from fworker import config
from fworker.settingvalues import format_value


def sample_config() -> str:
    """The documented sample configuration, ``etc/flamenco-worker.cfg``."""
    lines = [
        "# Flamenco Worker configuration (fworker).",
        "#",
        "# Read in this order, each overriding the one before: built-in defaults,",
        "# ./flamenco-worker.cfg, ~/.flamenco-worker.cfg, then the file given with -c.",
        "# Every setting is shown with its default; uncomment and edit to change it.",
        "# Values with a comma or a '#' must be put in double quotes.",
        "# Generated from fworker/config.py (python -m fworker.settingsdoc > etc/flamenco-worker.cfg).",
        "",
        f"[{config.SECTION}]",
    ]
    for s in config.SETTINGS:
        lines.append("")
        for line in textwrap.wrap(s.help, 76):
            lines.append(f"# {line}")
        if s.unit:
            lines.append(f"# Unit: {s.unit}.")
        lines.append(f"# {s.name} = {format_value(s.default)}".rstrip())
    lines += [
        "",
        f"[{config.PRE_TASK_SECTION}]",
        "# Checked before asking for each task; on failure the worker goes to state",
        "# 'error' and checks again after pre_task_check_interval. read.NAME paths must",
        "# be readable, write.NAME paths writable (tested with a temporary file).",
        "# read.textures = /mnt/shared/textures",
        "# write.renders = /mnt/shared/renders",
    ]
    return "\n".join(lines) + "\n"


def help_epilog() -> str:
    """Settings as listed at the end of ``--help``."""
    rows = ["configuration keys (section [flamenco-worker]; see etc/flamenco-worker.cfg):"]
    for s in config.SETTINGS:
        default = format_value(s.default) or '""'
        unit = f" {s.unit}" if s.unit else ""
        rows.append(f"  {s.name} (default {default}{unit})")
        rows.extend("      " + line for line in textwrap.wrap(s.help, 70))
    return "\n".join(rows)


if __name__ == "__main__":
    print(sample_config(), end="")
