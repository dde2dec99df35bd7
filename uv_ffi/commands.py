"""Typed answers to uv's read-only ``pip`` commands, without building command lines.

Each function runs one ``uv pip ...`` command in-process through :func:`uv_ffi.install` (argv
lists, so paths need no quoting). The engine answers these commands from its snapshot of the
environment and returns the answer as data (:class:`ReadAnswer`, ``RunResult.read``) beside uv's
exact text; when uv's own command line answered instead (an option the engine leaves to uv),
the functions parse what uv printed. ``python`` names the interpreter or
environment as ``--python`` does; without it uv finds one as ``uv pip ...`` would (an active
virtual environment, ``.venv``, then the first Python on ``PATH``). Failures raise uv_ffi's
exceptions, with uv's own exit code and text.
"""

from __future__ import annotations

import json
import os
import re
from ._records import Factory, record
from typing import Dict, List, Optional, Tuple

__all__ = [
    "CheckResult",
    "Package",
    "ReadAnswer",
    "ShowRecord",
    "check",
    "freeze",
    "freeze_pairs",
    "list_packages",
    "show",
]


@record
class Package:
    """One installed distribution, as ``uv pip list`` reports it.

    The first three fields are those of ``uv pip list --format json``; the others come with the
    engine's answer (None when uv's command line answered): the folder holding the metadata,
    ``kind`` (``registry``, ``url``, ``egg_info_file``, ``egg_info_directory``,
    ``legacy_editable``), the direct URL it was installed from, and its ``INSTALLER``."""

    name: str
    version: str
    #: The project folder of an editable install, None otherwise.
    editable_project_location: Optional[str] = None
    location: Optional[str] = None
    kind: Optional[str] = None
    editable: bool = False
    url: Optional[str] = None
    installer: Optional[str] = None

    @classmethod
    def from_json(cls, row: dict) -> "Package":
        return cls(row["name"], row["version"], row.get("editable_project_location"),
                   row.get("location"), row.get("kind"), bool(row.get("editable")), row.get("url"),
                   row.get("installer"))


@record
class ShowRecord:
    """One package's block of ``uv pip show``.

    ``fields`` holds every ``Key: value`` line uv printed for it, in order, as printed;
    ``requires`` and ``required_by`` are empty when uv printed no such line (unreadable metadata).
    """

    name: str
    version: str
    location: str
    requires: List[str] = Factory(list)
    required_by: List[str] = Factory(list)
    editable_project_location: Optional[str] = None
    #: The RECORD paths (``files=True``), None otherwise.
    files: Optional[List[str]] = None
    fields: Dict[str, str] = Factory(dict)


@record
class ReadAnswer:
    """The engine's answer to ``pip list``, ``freeze``, ``show`` or ``check``, as data
    (``uv_ffi_run``'s ``read`` field). Fields that do not belong to ``command`` are empty."""

    command: str
    packages: Tuple[Package, ...] = ()
    show: Tuple[ShowRecord, ...] = ()
    #: ``show``: the names asked for that are not installed.
    missing: Tuple[str, ...] = ()
    #: ``check`` and ``--strict``: one message per problem, as uv words it.
    problems: Tuple[str, ...] = ()

    @classmethod
    def from_json(cls, value: dict) -> "ReadAnswer":
        return cls(
            command=value["command"],
            packages=tuple(Package.from_json(row) for row in value.get("packages") or ()),
            show=tuple(_show_from_json(record) for record in value.get("show") or ()),
            missing=tuple(value.get("missing") or ()),
            problems=tuple(value.get("problems") or ()),
        )


def _show_from_json(record: dict) -> ShowRecord:
    """A record of the engine's ``show``, with ``fields`` as uv prints them."""
    fields = {"Name": record["name"], "Version": record["version"], "Location": record["location"]}
    if record.get("editable_project_location") is not None:
        fields["Editable project location"] = record["editable_project_location"]
    if record.get("requires") is not None:
        fields["Requires"] = ", ".join(record["requires"])
        fields["Required-by"] = ", ".join(record.get("required_by") or ())
    return ShowRecord(
        name=record["name"],
        version=record["version"],
        location=record["location"],
        requires=list(record.get("requires") or ()),
        required_by=list(record.get("required_by") or ()),
        editable_project_location=record.get("editable_project_location"),
        files=record.get("files"),
        fields=fields,
    )


@record
class CheckResult:
    """What ``uv pip check`` found: ``ok`` when every installed package's requirements are met,
    otherwise one line per problem, as uv words it."""

    ok: bool
    problems: List[str] = Factory(list)


def _uv(words: List[str], python: Optional[str]):
    """Run ``uv pip <words> [--python P] --color never`` and return its RunResult."""
    from . import install  # lazily: the package imports this module's names

    argv = ["pip", *words]
    if python is not None:
        argv += ["--python", os.fspath(python)]
    argv += ["--color", "never"]
    return install(argv)


def list_packages(python: Optional[str] = None, *, exclude_editable: bool = False) -> List[Package]:
    """The environment's distributions, as ``uv pip list --format json`` gives them (sorted by name)."""
    words = ["list", "--format", "json"]
    if exclude_editable:
        words.append("--exclude-editable")
    result = _uv(words, python)
    if result.read is not None:
        return list(result.read.packages)
    return [Package.from_json(row) for row in json.loads(result.stdout or "[]")]


def freeze(python: Optional[str] = None) -> str:
    """``uv pip freeze``'s exact text (``name==version``, ``name @ URL`` and ``-e URL`` lines)."""
    return _uv(["freeze"], python).stdout


def freeze_pairs(python: Optional[str] = None) -> List[Tuple[str, str]]:
    """``(name, version)`` for each ``name==version`` line of :func:`freeze`, in uv's order.

    Lines that pin a URL instead of a version (``-e URL``, ``name @ URL``) are left out; use
    :func:`list_packages` for the version of every distribution."""
    pairs = []
    for line in freeze(python).splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("-") and " " not in name:
            pairs.append((name, version))
    return pairs


def show(*names: str, python: Optional[str] = None, files: bool = False) -> List[ShowRecord]:
    """``uv pip show NAMES``: one record per installed distribution found, sorted by name.

    As uv does, names that are not installed are skipped (uv warns on stderr) unless none is
    installed: then uv fails with exit code 1 and this raises :class:`uv_ffi.CommandFailed`
    (so does calling it with no name)."""
    words = ["show", *names]
    if files:
        words.append("--files")
    result = _uv(words, python)
    if result.read is not None:
        return list(result.read.show)
    return _parse_show(result.stdout)


def _parse_show(text: str) -> List[ShowRecord]:
    blocks: List[List[str]] = [[]]
    for line in text.splitlines():
        if line == "---":
            blocks.append([])
        else:
            blocks[-1].append(line)
    return [_show_record(block) for block in blocks if block]


def _show_record(lines: List[str]) -> ShowRecord:
    fields: Dict[str, str] = {}
    files: Optional[List[str]] = None
    for line in lines:
        if line.startswith("  ") and files is not None:
            files.append(line[2:])
            continue
        key, _, value = line.partition(":")
        if key == "Files":
            files = []
        else:
            fields[key] = value.strip()

    def names(key: str) -> List[str]:
        return [name.strip() for name in fields.get(key, "").split(",") if name.strip()]

    return ShowRecord(
        name=fields.get("Name", ""),
        version=fields.get("Version", ""),
        location=fields.get("Location", ""),
        requires=names("Requires"),
        required_by=names("Required-by"),
        editable_project_location=fields.get("Editable project location"),
        files=files,
        fields=fields,
    )


#: uv's line before the problems: ``Found 1 incompatibility`` / ``Found 3 incompatibilities``.
_FOUND = re.compile(r"^Found (\d+) incompatibilit(?:y|ies)$")


def check(python: Optional[str] = None) -> CheckResult:
    """``uv pip check``. Problems are a result, not an error: uv's exit code 1 with its
    ``Found N incompatibilities`` report gives ``ok=False``; any other failure raises."""
    from .errors import CommandFailed

    try:
        _uv(["check"], python)
    except CommandFailed as exc:
        answered = exc.read.get("problems") if exc.read else None
        problems = answered if answered is not None else _check_problems(exc.stderr or exc.message)
        if exc.exit_code != 1 or problems is None:
            raise
        return CheckResult(ok=False, problems=problems)
    return CheckResult(ok=True, problems=[])


def _check_problems(stderr: str) -> Optional[List[str]]:
    """The problems uv reports after ``Found N incompatibilities`` (None if there is no such
    line). A problem may span lines: uv indents its continuation lines (``  - path``)."""
    lines = stderr.splitlines()
    for at, line in enumerate(lines):
        if _FOUND.match(line.strip()):
            problems: List[str] = []
            for problem in lines[at + 1:]:
                if problem[:1].isspace() and problems:
                    problems[-1] += "\n" + problem
                elif problem.strip():
                    problems.append(problem)
            return problems
    return None
