"""The documentation stays true and self-contained.

- Nothing in the repository points at files outside it.
- Every relative link in README.md and docs/*.md reaches a file (and a heading, when it
  names one); every "docs/PROTOCOL.md §N" cites a section that exists.
- The numbers README and docs quote are the code's constants, read here, so that a tuning
  change that forgets the prose fails a test instead of leaving the prose wrong.
- README's setting names are real settings; docs/COMMANDS.md and README list exactly the
  built-in commands, and each command's documented settings are the ones its validate() reads.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import logging
import os
import pathlib
import re
import sys
import textwrap
import typing

import pytest

import fworker
import fworker.commands  # noqa: F401  (registers the built-in commands)
from fworker import discovery, errors, overflow, process, proctree, registration, spool
from fworker.commands import base as commands, blender
from fworker.devmanager import DevManager

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MARKDOWN = [README, *DOCS]
PROTOCOL = ROOT / "docs/PROTOCOL.md"
COMMANDS = ROOT / "docs/COMMANDS.md"
RELIABILITY = ROOT / "docs/RELIABILITY.md"
DEVMANAGER = ROOT / "docs/DEVMANAGER.md"
SAMPLE_CONFIG = ROOT / "etc" / "flamenco-worker.cfg"
MiB = 1024 * 1024

# Spelled in pieces, so that this file does not find itself.
OUTSIDE = ("../" + "shared", "shared/" + "PROTOCOL")
SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", "build", "dist"}


def text(path: pathlib.Path) -> str:
    return path.read_text(encoding="utf-8")


def flat(path: pathlib.Path) -> str:
    """The file's text with every run of whitespace as one space (prose wraps anywhere)."""
    return " ".join(text(path).split())


def repository_files() -> typing.Iterator[pathlib.Path]:
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [name for name in dirnames
                       if name not in SKIPPED_DIRS and not name.endswith(".egg-info")
                       and not os.path.exists(os.path.join(dirpath, name, "pyvenv.cfg"))]  # any virtualenv
        for name in filenames:
            yield pathlib.Path(dirpath, name)


def without_code(markdown: str) -> str:
    """Markdown without fenced blocks and inline code, where brackets are not links."""
    markdown = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", markdown)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: pathlib.Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#{1,6} (.+?)\s*$", text(path), flags=re.M)}


def sections(path: pathlib.Path) -> set[str]:
    """The numbers of a document's numbered headings: "## 3. Endpoints" -> "3"."""
    return set(re.findall(r"^#{2,4} (\d+(?:\.\d+)*)\.?\s", text(path), flags=re.M))


# --- Self-contained ----------------------------------------------------------------------


def test_nothing_points_outside_the_repository():
    found = [f"{path.relative_to(ROOT)} mentions {needle!r}"
             for path in repository_files() for needle in OUTSIDE
             if needle.encode() in path.read_bytes()]
    assert not found, "the repository must explain itself:\n" + "\n".join(found)


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_existing_files_and_headings(doc):
    broken = []
    for target in LINK.findall(without_code(text(doc))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        destination = (doc.parent / path).resolve() if path else doc
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{target}: no heading with that anchor in {destination.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def test_the_readme_links_only_into_the_repository():
    for target in LINK.findall(without_code(text(README))):
        if not re.match(r"^https?:", target):
            assert (README.parent / target.partition("#")[0]).resolve().is_relative_to(ROOT), target


# A document's name, then one or more sections: "§3.4", "§2, §4.1", "§1-§7"; in Markdown
# the name may be a link's text or target, so a ")" may come between.
CITATION = re.compile(r"(PROTOCOL|COMMANDS)\.md\)?((?:\s*(?:,|-|and|or)?\s*§\d+(?:\.\d+)*)+)")


def citations() -> typing.Iterator[tuple[str, str, str]]:
    """(where, document, section) of every section a file of the repository cites."""
    for path in repository_files():
        if path.suffix not in (".py", ".md", ".cfg", ".txt", ".sh") and path.name != "run":
            continue
        content = text(path)
        for match in CITATION.finditer(content):
            for number in re.findall(r"§(\d+(?:\.\d+)*)", match.group(2)):
                yield str(path.relative_to(ROOT)), match.group(1), number
        if path in (PROTOCOL, COMMANDS):  # a bare "§3.4" in a numbered document is its own section
            for number in re.findall(r"§(\d+(?:\.\d+)*)", CITATION.sub("", content)):
                yield path.name, path.stem, number


def test_every_cited_section_exists():
    known = {"PROTOCOL": sections(PROTOCOL), "COMMANDS": sections(COMMANDS)}
    cited = list(citations())
    assert any(where.endswith(".py") for where, _, _ in cited)  # the search finds the code's citations
    missing = [f"{where} cites {doc}.md §{number}" for where, doc, number in cited
               if number not in known[doc]]
    assert not missing, "no such section: " + "; ".join(missing)


def test_code_cites_the_docs_by_their_path_in_the_repository():
    loose = []
    for path in repository_files():
        if path.suffix != ".py":
            continue
        for number, line in enumerate(text(path).splitlines(), 1):
            for match in re.finditer(r"(\S*)(PROTOCOL|COMMANDS)\.md", line):
                if not match.group(1).endswith("docs/"):
                    loose.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not loose, "write docs/NAME.md, so a reader finds it:\n" + "\n".join(loose)


def test_the_protocol_has_its_place_for_flamenco_3():
    headings = re.findall(r"^## (.+)$", text(PROTOCOL), flags=re.M)
    assert any("Flamenco 3 (api/v3)" in heading for heading in headings), headings


# Entry-point groups, spelled like modules.
NOT_CODE = {"fworker.commands", "fworker.task_types"}


@pytest.mark.parametrize("doc", [README, PROTOCOL, COMMANDS], ids=lambda p: p.name)
def test_names_of_code_the_docs_give_exist(doc):
    """`fworker.flusher.HEAD_BYTES` and the like: a constant named instead of copied must
    still be there."""
    missing = []
    for name in sorted(set(re.findall(r"`(fworker(?:\.[A-Za-z_]\w*)+)`", text(doc))) - NOT_CODE):
        parts = name.split(".")
        for split in range(len(parts), 0, -1):
            try:
                found: typing.Any = importlib.import_module(".".join(parts[:split]))
                break
            except ModuleNotFoundError:
                continue
        for attribute in parts[split:]:
            found = getattr(found, attribute, None)
        if found is None:
            missing.append(name)
    assert not missing, f"{doc.name} names what the code no longer has: {missing}"


# --- Numbers quoted from the code ---------------------------------------------------------


def mib(size: int) -> str:
    assert size % MiB == 0, f"{size} is not a whole number of MiB: reword the prose"
    return f"{size // MiB} MiB"


def duration(seconds: float) -> str:
    words = {60: "one minute", 600: "ten minutes"}
    assert seconds in words, f"{seconds} s: reword the prose, then this table"
    return words[seconds]


def default(function: typing.Callable, name: str) -> typing.Any:
    return inspect.signature(function).parameters[name].default


def sample_default(key: str) -> str:
    """A setting's default as etc/flamenco-worker.cfg (generated from the table) shows it."""
    match = re.search(rf"^# {re.escape(key)} = (.*)$", text(SAMPLE_CONFIG), flags=re.M)
    assert match, f"{key} is not in {SAMPLE_CONFIG.name}"
    return match.group(1)


# (document, its wording with {} where the number goes, the number from the code)
QUOTED: list[tuple[pathlib.Path, str, typing.Callable[[], typing.Any]]] = [
    (README, "up to {} wait in memory", lambda: mib(spool.MEMORY_LIMIT)),
    (README, "update queue ({} at most,", lambda: mib(spool.LIMIT)),
    (README, "never the last {} of free disk", lambda: mib(spool.DISK_RESERVE)),
    (README, "a backlog of over {},", lambda: mib(process._FLOOD_BACKLOG)),
    (README, "and {}/s or more still coming", lambda: mib(process._FLOOD_RATE)),
    # One chunk handled per period while a flood lasts.
    (README, "handled at ~{} MB/s", lambda: round(process._CHUNK / process._FLOOD_HANDLE_EVERY / 1e6)),
    (README, "or when {} wait", lambda: mib(spool.LIMIT)),
    (README, "{} fatal error;", lambda: errors.Fatal.exit_code),
    (README, "{} bad configuration;", lambda: errors.ConfigError.exit_code),
    (README, "{} registration refused", lambda: errors.RegistrationRefused.exit_code),
    (README, "{} duplicate command names", lambda: errors.DuplicateCommand.exit_code),
    (README, "{} a second Ctrl+C", lambda: default(proctree.exit_at_once, "code")),
    (PROTOCOL, "exits at once with code {}", lambda: default(proctree.exit_at_once, "code")),
    (RELIABILITY, "take at most {} of JSON", lambda: mib(overflow.MEMORY_LIMIT)),
    (RELIABILITY, "| `task_log_max_bytes` | {} ({})",
     lambda: (sample_default("task_log_max_bytes"), mib(int(sample_default("task_log_max_bytes"))))),
    (RELIABILITY, "lines over {} KiB come in pieces",
     lambda: default(process.ChildProcess.__init__, "max_line_bytes") // 1024),
    (DEVMANAGER, "`worker_timeout` seconds (default {})",
     lambda: f"{default(DevManager.__init__, 'worker_timeout'):g}"),
    (DEVMANAGER, "`task_ping_timeout` seconds (default {})",
     lambda: f"{default(DevManager.__init__, 'task_ping_timeout'):g}"),
    (PROTOCOL, "sent nothing for **{}** as `timeout`",
     lambda: duration(default(DevManager.__init__, "worker_timeout"))),
    (PROTOCOL, "from its worker for **{}**", lambda: duration(default(DevManager.__init__, "task_ping_timeout"))),
    (PROTOCOL, "It makes up its own secret: {} characters", lambda: len(registration.new_secret())),
    (PROTOCOL, "`MX: {}`", lambda: default(discovery.search_request, "mx")),
    (COMMANDS, "`--python-exit-code {} --python <overrides>`", lambda: blender.PYTHON_EXIT_CODE),
]


@pytest.mark.parametrize("doc, wording, value", QUOTED, ids=[f"{d.name}: {w}" for d, w, _ in QUOTED])
def test_quoted_numbers_are_the_codes(doc, wording, value):
    number = value()
    expected = wording.format(*number) if isinstance(number, tuple) else wording.format(number)
    assert expected in flat(doc), f"{doc.name} should say {expected!r} (the code's value)"


# --- Settings and commands ------------------------------------------------------------------


def setting_names() -> set[str]:
    return set(re.findall(r"^# ([a-z_]+) =", text(SAMPLE_CONFIG), flags=re.M))


def builtin_commands(dialect: str = "v2") -> set[str]:
    return {name for name in commands.registered(dialect) if commands.origin(name, dialect).builtin}


def test_the_settings_readme_names_exist():
    modules = {path.stem for path in (ROOT / "fworker").rglob("*.py")}
    other_names = builtin_commands() | modules | {"rejected_updates", "job_types"}  # a table; the legacy key
    named = set(re.findall(r"`([a-z]+(?:_[a-z0-9]+)+)`", text(README)))
    unknown = named - setting_names() - other_names
    assert not unknown, f"README names settings that do not exist: {sorted(unknown)}"
    assert {"manager_url", "task_types", "worker_registration_secret"} <= named


def test_the_readme_lists_every_builtin_command():
    section = text(README).split("## Commands", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z_0-9]+)`", section))
    assert listed - {"shlex"} == builtin_commands()


# docs/COMMANDS.md documents the Flamenco 3 catalogue in a section of its own, after the 2.x one.
V3_SECTION = "\n## 8. Flamenco 3 commands\n"


def documented_commands(dialect: str = "v2") -> dict[str, set[str]]:
    """Command name -> the settings docs/COMMANDS.md gives it (a table's first column;
    "As `other`" at the top of a section takes over the other command's settings)."""
    documented: dict[str, set[str]] = {}
    v2_part, found, v3_part = text(COMMANDS).partition(V3_SECTION)
    assert found, f"docs/COMMANDS.md has no section {V3_SECTION.strip()!r}"
    chunks = re.split(r"^### `([a-z_0-9-]+)`\s*$", v3_part if dialect == "v3" else v2_part, flags=re.M)
    for name, body in zip(chunks[1::2], chunks[2::2], strict=True):
        body = body.split("\n## ", 1)[0]
        settings = set()
        for row in re.findall(r"^\| (`[^|]+) \|", body, flags=re.M):
            settings |= set(re.findall(r"`([A-Za-z_0-9]+)`", row))
        inherited = re.match(r"\s*As `([a-z_0-9]+)`", body)
        if inherited:
            settings |= documented[inherited.group(1)]
        documented[name] = settings
    return documented


# Literals of validate() that are not setting names: a default value, a normalised key,
# a word of an error message, and a setting that is refused with an explanation.  (Flamenco
# 3's commands have none: their parameter "args" is one.)
NOT_SETTINGS = {"v2": {"ffmpeg", "args", "neither", "cycles_chunk"}, "v3": set()}


def validated_settings(cls: type, dialect: str = "v2") -> set[str]:
    """The names validate() reads: the identifier-like string literals in the
    validate() of the class and its bases (and FFmpeg's shared helper);
    Flamenco 3's are camelCase."""
    names = set()
    for klass in cls.__mro__:
        if klass is commands.Command:
            break
        for method in ("validate", "ffmpeg"):
            function = klass.__dict__.get(method)
            if function is None:
                continue
            for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(function)))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and re.fullmatch(r"[a-z][A-Za-z0-9_]*", node.value):
                    names.add(node.value)
    return names - NOT_SETTINGS[dialect]


@pytest.mark.parametrize("dialect", ["v2", "v3"])
def test_commands_md_documents_exactly_the_builtin_commands(dialect):
    assert set(documented_commands(dialect)) == builtin_commands(dialect)


@pytest.mark.parametrize("dialect, name", [(dialect, name) for dialect in ("v2", "v3")
                                           for name in sorted(builtin_commands(dialect))])
def test_commands_md_gives_each_command_the_settings_its_validate_reads(dialect, name):
    assert documented_commands(dialect)[name] == validated_settings(commands.lookup(name, dialect), dialect)


def _validated(name: str, settings: dict) -> dict:
    command = commands.lookup(name)(commands.CommandContext(None, logging.getLogger(__name__)))
    return command.validate(settings)


@pytest.mark.parametrize("name, settings, key, wording", [
    ("log_a_lot", {}, "lines", "| `lines` | number ≥ 0 | {} |"),
    ("exr_sequence_to_jpeg", {"blender_cmd": sys.executable, "filepath": "x.blend", "exr_glob": "*.exr"},
     "output_pattern", "| `output_pattern` | string | `{}` |"),
])
def test_commands_md_defaults_are_validates(name, settings, key, wording):
    assert wording.format(_validated(name, settings)[key]) in flat(COMMANDS)


# --- The layout table ------------------------------------------------------------------------


def declared_layers() -> list[tuple[str, set[str]]]:
    """tests/test_layers.py's LAYERS, read as data (a test module imports no other)."""
    tree = ast.parse(text(ROOT / "tests" / "test_layers.py"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "LAYERS":
            return [(name, set(members)) for name, members in ast.literal_eval(node.value)]
    raise AssertionError("tests/test_layers.py has no LAYERS")


def readme_layers() -> list[tuple[str, set[str]]]:
    """The README's layout table: layer name -> the modules its row describes (the names
    in backticks before each colon: "`api` (and `__init__`): ...")."""
    section = text(README).split("## Project layout", 1)[1].split("\n## ", 1)[0]
    rows = []
    for layer, items in re.findall(r"^\| ([a-z ]+) \| (.+) \|$", section, flags=re.M):
        if layer == "layer":
            continue
        named = set()
        for item in items.split(" · "):
            named |= set(re.findall(r"`([a-z_/]+)`", item.split(":", 1)[0]))
        rows.append((layer, named))
    return rows


def test_the_readme_layout_follows_the_declared_layers():
    # Shown as a folder: the commands package; described beside the table: the development
    # Manager; not worth a word: __main__.
    shown = {"commands": "commands/", "commands.*": None, "edge": "edge/", "edge.*": None, "edge.base": "edge/base",
             "devmanager": None, "devmanager.*": None, "__main__": None}
    expected = [(name, {shown.get(member, member) for member in members} - {None})
                for name, members in declared_layers()]
    expected = [(name, members) for name, members in expected if members]
    assert readme_layers() == expected
