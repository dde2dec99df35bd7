"""``pip list``, ``pip freeze``, ``pip show`` and ``pip check`` answered by the engine from its
snapshot of the environment (``engine == "view"``, ``rust/src/read.rs``).

Three things are checked for every answer: the text is exactly what the ``uv`` 0.12.5 binary
prints for the same words on the same environment (exit code, stdout, stderr; only durations in
``pip check``'s stderr are masked); the answer as data (``read``) agrees with what is on disk
(``.dist-info`` folders, ``INSTALLER``, ``RECORD``, ``direct_url.json``) and with the
environment's own ``importlib.metadata``; and the view stays true after the engine or someone
else changed the environment. Options the engine leaves to uv must still give uv's text.

Everything is offline: conftest's pypiserver index on 127.0.0.1 and a find-links folder with a
build backend made of the standard library (for the editable project).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from typing import Dict, List, NamedTuple, Optional, Set, Tuple

import pytest

import diffkit
import uv_ffi
from conftest import Venv
from test_commands import (  # noqa: F401  (fixtures are found by name in this module)
    backend,
    broken,
    hang_guard,
    project,
    seeded,
    snapshot,
    unchanged,
    untimed,
    uv,
    uv_binary,
    uv_ok,
)
from uv_ffi import _native, commands, sample_index
from uv_ffi.errors import CommandFailed, UvFfiError

HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "rust", "include", "uv_ffi.h")

#: The keys of a package and of a shown record in ``read``, as the header documents them.
PACKAGE_KEYS = {"name", "version", "location", "kind", "editable", "editable_project_location", "url",
                "installer"}
SHOW_KEYS = {"name", "version", "location", "editable_project_location", "requires", "required_by", "files"}
READ_KEYS = {"command", "packages", "show", "missing", "problems"}


# ---------------------------------------------------------------------------------------------
# Running the engine and the binary


class Answer(NamedTuple):
    code: int
    stdout: str
    stderr: str
    #: Who answered: ``RunResult.engine``; for a ``CommandFailed``, ``"view"`` when it carries
    #: ``read`` (only the engine's own answers do), else ``"uv"``; ``"error"`` for any other
    #: exception (uv never fails that way).
    engine: str
    read: Optional[commands.ReadAnswer]


def ask(argv: List[str]) -> Answer:
    """The words through ``uv_ffi.install``: a success's result, or what a failure carried."""
    try:
        result = uv_ffi.install(argv)
    except CommandFailed as exc:
        read = None if exc.read is None else commands.ReadAnswer.from_json(exc.read)
        return Answer(exc.exit_code, exc.stdout, exc.stderr, "uv" if read is None else "view", read)
    except UvFfiError as exc:  # not the way uv fails: shown as such, so the comparison says so
        return Answer(exc.exit_code, "", "<%s error> %s\n" % (exc.kind, exc.full_text()), "error", None)
    return Answer(result.exit_code, result.stdout, result.stderr, result.engine, result.read)


def context(ours: Answer, theirs) -> str:
    return "\n--- engine (%s) ---\n%s%s\n--- uv ---\n%s%s" % (
        ours.engine, ours.stdout, ours.stderr, theirs.stdout, theirs.stderr)


def answered_like_uv(argv: List[str], code: int = 0, by: str = "view", timed: bool = False) -> Answer:
    """Run ``argv`` through the engine and through the binary: uv exits ``code``, the engine
    answers through ``by`` with the same exit code, stdout and stderr, byte for byte (``timed``:
    durations in stderr masked, for ``pip check``'s ``Checked N packages in 0.2ms``)."""
    ours, theirs = ask(argv), uv(argv)
    assert theirs.code == code, "uv itself exited %d, expected %d%s" % (theirs.code, code, context(ours, theirs))
    assert ours.engine == by, "answered by %r, expected %r%s" % (ours.engine, by, context(ours, theirs))
    assert ours.code == theirs.code, context(ours, theirs)
    assert ours.stdout == theirs.stdout, "stdout differs" + context(ours, theirs)
    if timed:
        assert untimed(ours.stderr) == untimed(theirs.stderr), "stderr differs" + context(ours, theirs)
    else:
        assert ours.stderr == theirs.stderr, "stderr differs" + context(ours, theirs)
    return ours


def reads(python: str) -> int:
    return uv_ffi.get_counters(python)["reads"]


# ---------------------------------------------------------------------------------------------
# What is on disk


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_info_pairs(folder: str) -> Set[Tuple[str, str]]:
    """``(normalised name, version)`` of every ``.dist-info`` folder directly in ``folder``."""
    pairs = set()
    for entry in os.listdir(folder):
        if entry.endswith(".dist-info"):
            name, version = entry[: -len(".dist-info")].rsplit("-", 1)
            pairs.add((normalize(name), version))
    return pairs


def dist_info(folder: str, name: str) -> str:
    (found,) = [os.path.join(folder, entry) for entry in os.listdir(folder)
                if entry.endswith(".dist-info") and normalize(entry[: -len(".dist-info")].rsplit("-", 1)[0]) == name]
    return found


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def rewrite(path: str, text: str) -> None:
    """Replace a file by a new one: installed files are often hard links into uv's cache, which
    writing through them would change for every other environment."""
    os.remove(path)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def record_paths(folder: str, name: str) -> List[str]:
    """The paths of the distribution's RECORD file, in the file's order."""
    with open(os.path.join(dist_info(folder, name), "RECORD"), newline="") as handle:
        return [row[0] for row in csv.reader(handle) if row]


def parse_show(text: str) -> List[Dict[str, object]]:
    """uv's ``pip show`` text: one dict per block, ``Files`` as a list."""
    blocks: List[Dict[str, object]] = []
    for block in text.split("---\n"):
        fields: Dict[str, object] = {}
        for line in block.splitlines():
            if line.startswith("  "):
                fields["Files"].append(line[2:])  # type: ignore[union-attr]
            elif line == "Files:":
                fields["Files"] = []
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        blocks.append(fields)
    return blocks


def names(value: str) -> List[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def warnings_of(stderr: str) -> List[str]:
    return [line[len("warning: "):] for line in stderr.splitlines() if line.startswith("warning: ")]


def check_problems(stderr: str) -> List[str]:
    """uv's problem lines, after its ``Found N incompatibilit...`` line."""
    lines = stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if re.match(r"Found \d+ incompatibilit", line))
    return lines[at + 1:]


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def fresh(uv_binary, index, make_venv) -> Venv:
    """An empty environment this test may change."""
    return make_venv()


# ---------------------------------------------------------------------------------------------
# 1. The read commands of test_commands' differential cases are the engine's, and agree with disk

#: (the command after ``pip``, the words after ``--python PY``, uv's exit code)
READ_CASES = [
    (["list"], [], 0),
    (["list"], ["--format", "columns"], 0),
    (["list"], ["--format", "freeze"], 0),
    (["list"], ["--format", "json"], 0),
    (["list"], ["--exclude-editable"], 0),
    (["list"], ["--format", "json", "--exclude-editable"], 0),
    (["list"], ["--format", "freeze", "--exclude-editable"], 0),
    (["list"], ["--exclude", "beta", "--format", "json"], 0),
    (["list"], ["--editable"], 0),
    (["list"], ["--strict"], 0),
    (["freeze"], [], 0),
    (["freeze"], ["--exclude-editable"], 0),
    (["freeze"], ["--exclude", "alpha"], 0),
    (["show"], ["alpha", "beta"], 0),
    (["show"], ["edproj", "Mixed_Case.Name"], 0),
    (["show"], ["--files", "alpha"], 0),
    (["show"], ["--files", "edproj"], 0),
    (["show"], ["alpha", "no-such-package"], 0),
    (["show"], ["no-such-package"], 1),
    (["show"], [], 1),
    (["check"], [], 0),
]


def case_id(case) -> str:
    command, options, _ = case
    return " ".join(command + options) if options else command[0]


@pytest.mark.parametrize("case", READ_CASES, ids=case_id)
def test_read_command_is_answered_by_the_engine_as_uv_answers_it(seeded, case):
    command, options, code = case
    ours = answered_like_uv(["pip", *command, "--python", seeded.python, *options], code,
                            timed=command == ["check"])
    assert ours.read is not None and ours.read.command == command[0]


@pytest.mark.parametrize("kind", ["missing", "incompatible"])
def test_check_of_a_broken_environment_is_answered_by_the_engine_as_uv_answers_it(broken, kind):
    venv = broken(kind)
    ours = answered_like_uv(["pip", "check", "--python", venv.python], 1, timed=True)
    assert ours.read.command == "check" and len(ours.read.problems) == 1


def test_list_packages_are_the_dist_info_folders_on_disk(seeded, project):
    ours = ask(["pip", "list", "--python", seeded.python])
    assert ours.engine == "view"
    packages = {package.name: package for package in ours.read.packages}
    assert {(p.name, p.version) for p in ours.read.packages} == dist_info_pairs(seeded.site_packages)
    assert {name: p.version for name, p in packages.items()} == seeded.installed()
    for name, package in packages.items():
        assert package.location == seeded.site_packages, name
        installer = read_text(os.path.join(dist_info(seeded.site_packages, name), "INSTALLER")).strip()
        assert package.installer == installer == "uv", name
    for name in ("alpha", "beta", "gamma", "delta", "mixed-case-name"):
        assert (packages[name].kind, packages[name].editable) == ("registry", False), name
        assert (packages[name].url, packages[name].editable_project_location) == (None, None), name
    edproj = packages["edproj"]
    assert (edproj.kind, edproj.editable) == ("url", True)
    assert edproj.url.startswith("file://")
    assert edproj.editable_project_location == project
    direct_url = json.loads(read_text(os.path.join(dist_info(seeded.site_packages, "edproj"), "direct_url.json")))
    assert edproj.url == direct_url["url"]
    assert direct_url["dir_info"] == {"editable": True}


def test_list_packages_are_in_uvs_order(seeded, project):
    theirs = uv(["pip", "list", "--python", seeded.python, "--format", "json"])
    rows = json.loads(theirs.stdout)
    ours = ask(["pip", "list", "--python", seeded.python, "--format", "json"])
    assert [(p.name, p.version, p.editable_project_location) for p in ours.read.packages] == [
        (row["name"], row["version"], row.get("editable_project_location")) for row in rows]


@pytest.mark.parametrize("options", [[], ["--exclude-editable"]], ids=lambda o: " ".join(o) or "plain")
def test_freeze_packages_are_uvs_lines_in_uvs_order(seeded, options):
    theirs = uv(["pip", "freeze", "--python", seeded.python, *options])
    ours = ask(["pip", "freeze", "--python", seeded.python, *options])
    assert ours.engine == "view" and ours.read.command == "freeze"

    def line(package: commands.Package) -> str:
        if package.editable:
            return "-e " + package.url
        return "%s @ %s" % (package.name, package.url) if package.url else "%s==%s" % (package.name, package.version)

    assert [line(package) for package in ours.read.packages] == theirs.stdout.splitlines()


def test_show_requires_and_required_by_agree_with_uvs_text(seeded):
    words = ["pip", "show", "--python", seeded.python, "alpha", "beta", "gamma", "delta", "edproj"]
    ours, theirs = ask(words), uv(words)
    assert ours.engine == "view"
    blocks = parse_show(theirs.stdout)
    assert [record.name for record in ours.read.show] == [block["Name"] for block in blocks]
    for record, block in zip(ours.read.show, blocks):
        assert record.version == block["Version"]
        assert record.location == block["Location"] == seeded.site_packages
        assert record.requires == names(block["Requires"]), record.name
        assert record.required_by == names(block["Required-by"]), record.name
    by_name = {record.name: record for record in ours.read.show}
    assert by_name["alpha"].required_by == ["beta", "edproj"]
    assert by_name["beta"].requires == ["alpha"]
    # gamma's extra pulled delta in, but gamma itself does not require it.
    assert (by_name["gamma"].requires, by_name["delta"].required_by) == ([], [])


def test_show_files_are_the_record_files_on_disk(seeded):
    words = ["pip", "show", "--python", seeded.python, "alpha", "beta", "--files"]
    ours, theirs = ask(words), uv(words)
    assert ours.engine == "view"
    blocks = parse_show(theirs.stdout)
    assert len(ours.read.show) == len(blocks) == 2
    for record, block in zip(ours.read.show, blocks):
        assert record.files == record_paths(seeded.site_packages, record.name) == block["Files"]
        assert record.files, record.name
        assert (record.requires, record.required_by) == (names(block["Requires"]), names(block["Required-by"]))
    assert ours.read.missing == ()


def test_show_reports_the_names_it_did_not_find(seeded):
    ours = answered_like_uv(["pip", "show", "--python", seeded.python, "alpha", "no-such-package", "zeta"])
    assert ours.read.missing == ("no-such-package", "zeta")
    assert [record.name for record in ours.read.show] == ["alpha"]
    with pytest.raises(CommandFailed) as caught:
        uv_ffi.install(["pip", "show", "--python", seeded.python, "no-such-package"])
    assert caught.value.exit_code == 1
    assert caught.value.read == {"command": "show", "missing": ["no-such-package"]}


# Distributions of every kind uv knows, and damaged ones


def test_egg_info_and_legacy_editable_distributions_match_uv_and_the_disk(fresh, index, tmp_path):
    site = fresh.site_packages
    os.makedirs(os.path.join(site, "eggdir-1.0-py3.11.egg-info"))
    with open(os.path.join(site, "eggdir-1.0-py3.11.egg-info", "PKG-INFO"), "w") as handle:
        handle.write("Metadata-Version: 2.1\nName: eggdir\nVersion: 1.0\nRequires-Dist: alpha\n")
    with open(os.path.join(site, "eggfile-2.0-py3.11.egg-info"), "w") as handle:
        handle.write("Metadata-Version: 2.1\nName: eggfile\nVersion: 2.0\n")
    legacy = tmp_path / "legproj"
    (legacy / "legedit.egg-info").mkdir(parents=True)
    (legacy / "legedit.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: legedit\nVersion: 0.5\n")
    with open(os.path.join(site, "legedit.egg-link"), "w") as handle:
        handle.write("%s\n.\n" % legacy)

    for words in (["list"], ["list", "--editable"], ["freeze"], ["freeze", "--exclude-editable"]):
        answered_like_uv(["pip", *words, "--python", fresh.python])
    ours = answered_like_uv(["pip", "check", "--python", fresh.python], 1, timed=True)
    assert ours.read.problems == ("The package `eggdir` requires `alpha`, but it's not installed",)
    packages = {p.name: p for p in ask(["pip", "list", "--python", fresh.python]).read.packages}
    assert {name: (p.version, p.kind, p.editable, p.installer) for name, p in packages.items()} == {
        "eggdir": ("1.0", "egg_info_directory", False, None),
        "eggfile": ("2.0", "egg_info_file", False, None),
        "legedit": ("0.5", "legacy_editable", True, None),
    }
    assert packages["eggdir"].location == packages["eggfile"].location == site
    assert (packages["legedit"].url, packages["legedit"].editable_project_location) == (legacy.as_uri(), str(legacy))
    shown = answered_like_uv(["pip", "show", "--python", fresh.python, "eggdir", "legedit"]).read.show
    assert [(r.name, r.requires, r.location) for r in shown] == [("eggdir", ["alpha"], site),
                                                                 ("legedit", [], packages["legedit"].location)]


def test_installer_is_what_the_installer_file_says(fresh, index):
    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-q", "alpha==2.0", "beta==1.0", "zeta==1.0")
    rewrite(os.path.join(dist_info(fresh.site_packages, "beta"), "INSTALLER"), "pip\n")
    os.remove(os.path.join(dist_info(fresh.site_packages, "zeta"), "INSTALLER"))
    ours = answered_like_uv(["pip", "list", "--python", fresh.python])
    assert {p.name: p.installer for p in ours.read.packages} == {"alpha": "uv", "beta": "pip", "zeta": None}


def test_unreadable_metadata_shows_no_requirement_lines_as_uv_does(fresh, index):
    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-q", "alpha==2.0", "beta==1.0")
    os.remove(os.path.join(dist_info(fresh.site_packages, "alpha"), "METADATA"))
    for words in (["list"], ["freeze"], ["show", "alpha", "beta"], ["list", "--strict"]):
        answered_like_uv(["pip", *words, "--python", fresh.python])
    answered_like_uv(["pip", "check", "--python", fresh.python], 1, timed=True)
    value = _native.call("run", {"argv": ["pip", "show", "--python", fresh.python, "alpha", "beta"]})
    alpha, beta = value["read"]["show"]
    assert (alpha["requires"], alpha["required_by"]) == (None, None)
    assert (beta["requires"], beta["required_by"]) == (["alpha"], [])


def test_two_distributions_of_one_name_are_reported_as_uv_reports_them(fresh, index, tmp_path):
    """A killed install can leave two ``.dist-info`` folders for one name."""
    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-q", "alpha==2.0", "beta==1.0")
    elsewhere = str(tmp_path / "elsewhere")
    uv_ok("pip", "install", "--python", fresh.python, "--target", elsewhere, "-i", index.url, "-q", "alpha==1.0")
    shutil.copytree(os.path.join(elsewhere, "alpha-1.0.dist-info"),
                    os.path.join(fresh.site_packages, "alpha-1.0.dist-info"))
    for words in (["list"], ["freeze"], ["show", "alpha", "beta"], ["show", "alpha", "--files"]):
        answered_like_uv(["pip", *words, "--python", fresh.python])
    ours = answered_like_uv(["pip", "list", "--python", fresh.python, "--strict"])
    assert [(p.name, p.version) for p in ours.read.packages] == [("alpha", "1.0"), ("alpha", "2.0"), ("beta", "1.0")]
    assert ours.read.problems[0].startswith("The package `alpha` has multiple installed distributions:")
    answered_like_uv(["pip", "check", "--python", fresh.python], 1, timed=True)


def test_show_of_two_distributions_of_one_name_with_different_requirements_matches_uv(fresh, index, tmp_path):
    """uv's ``show`` keeps the requirements of the last distribution it read under a name."""
    links = str(tmp_path / "links")
    sample_index.build_wheel(links, "omega", "1.0", ["alpha"], {})
    sample_index.build_wheel(links, "omega", "2.0", ["zeta"], {})
    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-f", links, "-q", "omega==1.0", "zeta==1.0")
    elsewhere = str(tmp_path / "elsewhere")
    uv_ok("pip", "install", "--python", fresh.python, "--target", elsewhere, "-f", links, "--no-index", "-q",
          "--no-deps", "omega==2.0")
    shutil.copytree(os.path.join(elsewhere, "omega-2.0.dist-info"),
                    os.path.join(fresh.site_packages, "omega-2.0.dist-info"))
    answered_like_uv(["pip", "show", "--python", fresh.python, "omega"])
    answered_like_uv(["pip", "show", "--python", fresh.python, "alpha", "omega", "zeta"])


def test_show_leaves_out_requirements_whose_markers_do_not_hold(fresh, index, tmp_path):
    links = str(tmp_path / "links")
    sample_index.build_wheel(links, "marked", "1.0", ["alpha; python_version < '3'", "zeta", "delta; extra == 'x'"])
    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-f", links, "-q", "marked==1.0", "alpha==1.0")
    shown = answered_like_uv(["pip", "show", "--python", fresh.python, "marked", "alpha", "zeta"]).read.show
    assert {r.name: (r.requires, r.required_by) for r in shown} == {
        "marked": (["zeta"], []), "alpha": ([], []), "zeta": ([], ["marked"])}
    answered_like_uv(["pip", "check", "--python", fresh.python], timed=True)


def test_show_files_with_a_missing_record_fails_as_uv_does(fresh, index):
    """uv prints the blocks before the distribution without RECORD, then fails (exit 2)."""
    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-q", "alpha==2.0", "beta==1.0")
    os.remove(os.path.join(dist_info(fresh.site_packages, "beta"), "RECORD"))
    answered_like_uv(["pip", "show", "--python", fresh.python, "beta"])
    answered_like_uv(["pip", "show", "--python", fresh.python, "alpha", "beta", "--files"], 2, by="uv")


@pytest.mark.parametrize("words", [["list"], ["freeze"], ["show", "alpha"], ["check"]], ids=" ".join)
def test_reads_of_an_environment_uv_cannot_scan_fail_as_uv_does(fresh, index, words):
    """A ``.dist-info`` folder whose version does not parse: uv fails (exit 2) with its error."""
    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-q", "alpha==2.0")
    os.makedirs(os.path.join(fresh.site_packages, "x-notaversion.dist-info"))
    answered_like_uv(["pip", *words, "--python", fresh.python], 2, by="uv")


# ---------------------------------------------------------------------------------------------
# 2. The view stays true after changes, by the engine and from outside


def assert_listing_is_true(venv: Venv, expected: Dict[str, str]) -> None:
    """``pip list`` from the engine: uv's text, and the versions on disk and in importlib."""
    ours = answered_like_uv(["pip", "list", "--python", venv.python])
    listed = {p.name: p.version for p in ours.read.packages}
    assert listed == expected
    assert set(listed.items()) == dist_info_pairs(venv.site_packages)
    assert venv.installed() == expected
    answered_like_uv(["pip", "freeze", "--python", venv.python])


def test_list_follows_the_engines_own_swaps(fresh, index):
    def engine_runs(*words: str) -> None:
        index_options = ["-i", index.url] if words[0] == "install" else []
        result = uv_ffi.install(["pip", *words, "--python", fresh.python, *index_options])
        assert result.engine == "warm"

    assert_listing_is_true(fresh, {})
    engine_runs("install", "alpha==1.0")
    assert_listing_is_true(fresh, {"alpha": "1.0"})
    engine_runs("install", "alpha==2.0", "beta==1.0")
    assert_listing_is_true(fresh, {"alpha": "2.0", "beta": "1.0"})
    engine_runs("install", "alpha==1.1")
    assert_listing_is_true(fresh, {"alpha": "1.1", "beta": "1.0"})
    engine_runs("uninstall", "beta")
    assert_listing_is_true(fresh, {"alpha": "1.1"})


def test_list_sees_what_the_uv_binary_changed_in_the_same_environment(fresh, index):
    uv_ffi.install(["pip", "install", "--python", fresh.python, "-i", index.url, "alpha==1.0", "beta==1.0"])
    assert_listing_is_true(fresh, {"alpha": "1.0", "beta": "1.0"})

    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-q", "zeta==1.0")
    assert_listing_is_true(fresh, {"alpha": "1.0", "beta": "1.0", "zeta": "1.0"})
    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-q", "alpha==2.0")
    assert_listing_is_true(fresh, {"alpha": "2.0", "beta": "1.0", "zeta": "1.0"})
    uv_ok("pip", "uninstall", "--python", fresh.python, "-q", "alpha")
    assert_listing_is_true(fresh, {"beta": "1.0", "zeta": "1.0"})
    # ... and check and show see the hole left behind.
    ours = answered_like_uv(["pip", "check", "--python", fresh.python], 1, timed=True)
    assert ours.read.problems == ("The package `beta` requires `alpha>=1.0`, but it's not installed",)
    answered_like_uv(["pip", "show", "--python", fresh.python, "alpha"], 1)


def test_an_outside_change_is_detected_once_and_unchanged_reads_rescan_nothing(fresh, index):
    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-q", "alpha==1.0")
    ask(["pip", "list", "--python", fresh.python])
    before = uv_ffi.get_counters(fresh.python)
    for _ in range(3):
        ask(["pip", "list", "--python", fresh.python])
    after = uv_ffi.get_counters(fresh.python)
    assert (after["rescans"], after["changes_detected"]) == (before["rescans"], before["changes_detected"])
    assert after["reads"] == before["reads"] + 3

    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-q", "zeta==1.0")
    assert {p.name for p in ask(["pip", "list", "--python", fresh.python]).read.packages} == {"alpha", "zeta"}
    changed = uv_ffi.get_counters(fresh.python)
    assert changed["changes_detected"] == after["changes_detected"] + 1


@pytest.mark.parametrize("change", ["editable reinstalled with new requirements", "registry install replaced by a URL"])
def test_an_outside_reinstall_under_the_same_folder_names_is_seen(fresh, index, backend, wheelhouse, tmp_path, change):
    """The uv binary replaces a distribution by one of the same name and version: the folder
    names in site-packages stay the same, what is in them does not."""
    project = diffkit.write_project(str(tmp_path / "proj"), "edp", "0.1", ["alpha"])
    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-f", backend, "-q", "-e", project,
          "alpha==1.0", "zeta==1.0")
    answered_like_uv(["pip", "show", "--python", fresh.python, "edp", "alpha", "zeta"])
    answered_like_uv(["pip", "freeze", "--python", fresh.python])

    if change.startswith("editable"):
        diffkit.write_project(project, "edp", "0.1", ["zeta"])
        uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-f", backend, "-q",
              "--reinstall-package", "edp", "-e", project)
        ours = answered_like_uv(["pip", "show", "--python", fresh.python, "edp", "alpha", "zeta"])
        assert {r.name: r.requires for r in ours.read.show}["edp"] == ["zeta"]
    else:
        (wheel,) = [name for name in os.listdir(wheelhouse) if name.startswith("alpha-1.0-")]
        uv_ok("pip", "install", "--python", fresh.python, "-q", "--reinstall", os.path.join(wheelhouse, wheel))
        ours = answered_like_uv(["pip", "freeze", "--python", fresh.python])
        alpha = {p.name: p for p in ours.read.packages}["alpha"]
        direct_url = json.loads(read_text(os.path.join(dist_info(fresh.site_packages, "alpha"), "direct_url.json")))
        assert (alpha.kind, alpha.url) == ("url", direct_url["url"])


def test_metadata_edited_in_place_is_read_again_after_an_invalidation(fresh, index):
    """Editing a METADATA file moves no folder: the ``validate`` policy does not look inside
    (one ``stat`` per site-packages folder); an invalidation makes the next read true."""
    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-q", "alpha==2.0", "beta==1.0")
    answered_like_uv(["pip", "show", "--python", fresh.python, "beta"])
    metadata = os.path.join(dist_info(fresh.site_packages, "beta"), "METADATA")
    text = read_text(metadata)
    assert "Requires-Dist: alpha>=1.0" in text
    rewrite(metadata, text.replace("Requires-Dist: alpha>=1.0", "Requires-Dist: zeta"))
    uv_ffi.invalidate_site_packages_cache(fresh.python)
    ours = answered_like_uv(["pip", "show", "--python", fresh.python, "beta"])
    assert ours.read.show[0].requires == ["zeta"]
    answered_like_uv(["pip", "check", "--python", fresh.python], 1, timed=True)


# ---------------------------------------------------------------------------------------------
# 3. --target folders


@pytest.fixture
def target(fresh, index, tmp_path) -> str:
    """A ``--target`` folder the engine installed alpha 1.0 and beta 1.0 into."""
    folder = str(tmp_path / "target")
    result = uv_ffi.install(["pip", "install", "--python", fresh.python, "--target", folder, "-i", index.url,
                             "alpha==1.0", "beta==1.0"])
    assert result.engine == "warm" and result.target is not None
    return folder


@pytest.mark.parametrize("words, code", [
    (["list"], 0),
    (["list", "--format", "json"], 0),
    (["freeze"], 0),
    (["show", "alpha", "beta", "--files"], 0),
    (["show", "gamma"], 1),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_target_folder_reads_match_uv(fresh, target, words, code):
    ours = answered_like_uv(["pip", *words, "--target", target, "--python", fresh.python], code)
    assert "environment at: " in ours.stderr


def test_target_folder_records_agree_with_its_disk(fresh, target):
    ours = ask(["pip", "list", "--target", target, "--python", fresh.python])
    assert ours.engine == "view"
    assert {(p.name, p.version) for p in ours.read.packages} == dist_info_pairs(target) == {
        ("alpha", "1.0"), ("beta", "1.0")}
    assert {p.location for p in ours.read.packages} == {target}
    assert {p.kind for p in ours.read.packages} == {"registry"}
    shown = ask(["pip", "show", "--target", target, "--python", fresh.python, "beta", "--files"]).read.show
    assert [(r.name, r.location, r.requires, r.files) for r in shown] == [
        ("beta", target, ["alpha"], record_paths(target, "beta"))]
    # The environment itself is untouched by the --target install.
    assert ask(["pip", "list", "--python", fresh.python]).read.packages == ()


def test_target_folder_reads_follow_changes(fresh, target, index):
    uv_ffi.install(["pip", "install", "--python", fresh.python, "--target", target, "-i", index.url, "alpha==2.0"])
    ours = answered_like_uv(["pip", "freeze", "--target", target, "--python", fresh.python])
    assert ours.stdout == "alpha==2.0\nbeta==1.0\n"
    uv_ok("pip", "install", "--python", fresh.python, "--target", target, "-i", index.url, "-q", "zeta==1.0")
    ours = answered_like_uv(["pip", "freeze", "--target", target, "--python", fresh.python])
    assert ours.stdout == "alpha==2.0\nbeta==1.0\nzeta==1.0\n"
    assert {(p.name, p.version) for p in ours.read.packages} == dist_info_pairs(target)


# ---------------------------------------------------------------------------------------------
# 4. -q and -qq


QUIET_CASES = [
    (["list"], 0),
    (["list", "--format", "json"], 0),
    (["freeze"], 0),
    (["show", "alpha", "edproj"], 0),
    (["show", "alpha", "--files"], 0),
    (["show", "alpha", "no-such-package"], 0),
    (["show", "no-such-package"], 1),
    (["show"], 1),
    (["check"], 0),
]


@pytest.mark.parametrize("quiet", ["-q", "-qq"])
@pytest.mark.parametrize("words, code", QUIET_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_quiet_matches_uv(seeded, quiet, words, code):
    answered_like_uv(["pip", *words, "--python", seeded.python, quiet], code)


@pytest.mark.parametrize("quiet", ["-q", "-qq"])
def test_quiet_check_of_a_broken_environment_matches_uv(broken, quiet):
    venv = broken("missing")
    ours = answered_like_uv(["pip", "check", "--python", venv.python, quiet], 1)
    assert ours.stderr == "" and len(ours.read.problems) == 1


# ---------------------------------------------------------------------------------------------
# 5. --strict and check on a broken environment


@pytest.mark.parametrize("kind", ["missing", "incompatible"])
@pytest.mark.parametrize("words", [["list"], ["list", "--format", "json"], ["freeze"], ["show", "beta"]],
                         ids=" ".join)
def test_strict_warns_as_uv_does_and_answers_the_problems(broken, kind, words):
    venv = broken(kind)
    ours = answered_like_uv(["pip", *words, "--python", venv.python, "--strict"])
    assert warnings_of(ours.stderr), ours.stderr
    assert list(ours.read.problems) == warnings_of(ours.stderr)


def test_strict_on_a_sound_environment_finds_no_problem(seeded):
    ours = answered_like_uv(["pip", "list", "--python", seeded.python, "--strict"])
    assert ours.read.problems == () and warnings_of(ours.stderr) == []


@pytest.mark.parametrize("kind", ["missing", "incompatible"])
def test_check_of_a_broken_environment_fails_with_uvs_problems(broken, kind):
    venv = broken(kind)
    theirs = uv(["pip", "check", "--python", venv.python])
    assert theirs.code == 1
    with pytest.raises(CommandFailed) as caught:
        uv_ffi.install(["pip", "check", "--python", venv.python])
    assert caught.value.exit_code == 1
    assert caught.value.stdout == theirs.stdout
    assert untimed(caught.value.stderr) == untimed(theirs.stderr)
    assert caught.value.read["command"] == "check"
    assert caught.value.read["problems"] == check_problems(theirs.stderr)
    assert uv_ffi.check(venv.python) == commands.CheckResult(ok=False, problems=check_problems(theirs.stderr))


# ---------------------------------------------------------------------------------------------
# 6. Options the engine leaves to uv's command line


def test_verbose_list_is_left_to_uv(seeded):
    words = ["pip", "list", "--python", seeded.python, "-v"]
    ours, theirs = ask(words), uv(words)
    assert ours.engine == "uv" and ours.read is None
    assert (ours.code, ours.stdout) == (theirs.code, theirs.stdout) == (0, uv(words[:-1]).stdout)


@pytest.mark.parametrize("words, timed", [
    (["freeze", "--path", "{site}"], False),
    (["check", "--python-version", "3.11"], True),
    (["list", "--color", "always"], False),
    (["freeze", "--color", "always"], False),
    (["list", "--outdated", "-i", "{index}"], False),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_options_left_to_uv_still_give_uvs_text(seeded, index, words, timed):
    words = [word.format(site=seeded.site_packages, index=index.url) for word in words]
    before = reads(seeded.python)
    ours = answered_like_uv(["pip", words[0], "--python", seeded.python, *words[1:]], by="uv", timed=timed)
    assert ours.read is None
    assert reads(seeded.python) == before


def test_force_color_leaves_the_read_to_uv(seeded, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    ours = answered_like_uv(["pip", "list", "--python", seeded.python], by="uv")
    assert ours.read is None


def test_config_file_leaves_the_read_to_uv_and_no_config_brings_it_back(seeded, tmp_path, monkeypatch):
    (tmp_path / "uv.toml").write_text("[pip]\nstrict = true\n")
    monkeypatch.chdir(tmp_path)
    answered_like_uv(["pip", "list", "--python", seeded.python], by="uv")
    answered_like_uv(["pip", "list", "--python", seeded.python, "--no-config"])


@pytest.mark.parametrize("words", [["list"], ["list", "--color", "always"], ["list", "-v"]], ids=" ".join)
def test_after_the_host_changed_directory_the_environment_is_named_as_documented(
        fresh, index, tmp_path, monkeypatch, words):
    """The engine's own answer shows the ``Using Python ... environment at:`` path relative to
    the current folder, as a ``uv`` started there shows it. uv's command line (options left to
    it) reads the current folder once per process (``uv_fs::CWD``), so after the host changed
    directory it names the same environment by its full path: the documented limit (README,
    "Limits"). Either way the environment named is the one uv names."""
    uv_ok("pip", "install", "--python", fresh.python, "-i", index.url, "-q", "alpha==1.0")
    monkeypatch.chdir(tmp_path)
    argv = ["pip", words[0], "--python", os.path.relpath(fresh.python), *words[1:]]
    theirs = uv(argv)
    relative = "environment at: %s\n" % os.path.basename(fresh.root)
    assert relative in plain(theirs.stderr)
    ours = ask(argv)
    assert (ours.code, ours.stdout) == (theirs.code, theirs.stdout)
    if words == ["list"]:
        assert ours.engine == "view" and relative in ours.stderr, ours.stderr
    else:
        assert ours.engine == "uv"
        full = "environment at: %s\n" % os.path.realpath(fresh.root)
        assert full in plain(ours.stderr), ours.stderr[-400:]


def plain(text: str) -> str:
    """``text`` without terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# ---------------------------------------------------------------------------------------------
# 7. Finding the environment as uv does: ./.venv, VIRTUAL_ENV


@pytest.fixture
def workdir(uv_binary, index, tmp_path, monkeypatch) -> Venv:
    """A working folder holding ``.venv`` (alpha 1.0 in it), the current folder, with no
    environment activated."""
    work = tmp_path / "work"
    work.mkdir()
    venv = Venv(str(work / ".venv"))
    uv_ok("pip", "install", "--python", venv.python, "-i", index.url, "-q", "alpha==1.0")
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    monkeypatch.chdir(work)
    return venv


@pytest.mark.parametrize("words, code", [
    (["list"], 0),
    (["freeze"], 0),
    (["show", "alpha"], 0),
    (["check"], 0),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_dot_venv_in_the_current_folder_is_found_as_uv_finds_it(workdir, words, code):
    ours = answered_like_uv(["pip", *words], code, timed=words == ["check"])
    assert "Using Python" not in ours.stderr
    if words[0] in ("list", "freeze"):
        assert [(p.name, p.version, p.location) for p in ours.read.packages] == [
            ("alpha", "1.0", workdir.site_packages)]


def test_virtual_env_names_the_environment_as_uv_finds_it(workdir, make_venv, index, monkeypatch):
    other = make_venv()
    uv_ok("pip", "install", "--python", other.python, "-i", index.url, "-q", "zeta==1.0")
    monkeypatch.setenv("VIRTUAL_ENV", other.root)
    ours = answered_like_uv(["pip", "list"])
    assert "environment at: %s\n" % other.root in ours.stderr
    assert [(p.name, p.location) for p in ours.read.packages] == [("zeta", other.site_packages)]
    answered_like_uv(["pip", "freeze"])


def test_python_given_as_the_environment_folder_matches_uv(seeded):
    ours = answered_like_uv(["pip", "list", "--python", seeded.root])
    assert {p.name for p in ours.read.packages} == set(seeded.installed())


def test_relative_target_and_python_in_a_changed_folder_match_uv(fresh, index, tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    uv_ffi.install(["pip", "install", "--python", fresh.python, "--target", "tgt", "-i", index.url, "alpha==1.0"])
    assert dist_info_pairs(str(tmp_path / "here" / "tgt")) == {("alpha", "1.0")}
    ours = answered_like_uv(["pip", "list", "--target", "tgt", "--python", fresh.python])
    assert [p.location for p in ours.read.packages] == [str(tmp_path / "here" / "tgt")]
    answered_like_uv(["pip", "list", "--python", os.path.relpath(fresh.python)])


def test_dot_venv_of_a_parent_folder_is_found_as_uv_finds_it(workdir, monkeypatch):
    sub = os.path.join(os.path.dirname(workdir.root), "sub")
    os.mkdir(sub)
    monkeypatch.chdir(sub)
    ours = answered_like_uv(["pip", "list"])
    assert "environment at: %s\n" % workdir.root in ours.stderr
    answered_like_uv(["pip", "freeze"])


def test_uv_python_variable_names_the_environment_as_uv_reads_it(workdir, make_venv, index, monkeypatch):
    other = make_venv()
    uv_ok("pip", "install", "--python", other.python, "-i", index.url, "-q", "zeta==1.0")
    monkeypatch.setenv("UV_PYTHON", other.python)
    ours = answered_like_uv(["pip", "list"])
    assert [p.name for p in ours.read.packages] == ["zeta"]


def test_the_environment_as_the_current_folder_matches_uv(seeded, monkeypatch):
    monkeypatch.chdir(seeded.root)
    answered_like_uv(["pip", "list", "--python", "bin/python"])
    answered_like_uv(["pip", "freeze", "--python", "."])


def test_an_environment_reached_through_a_symlink_matches_uv(index, tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    venv = Venv(str(tmp_path / "real" / "venv"))
    uv_ok("pip", "install", "--python", venv.python, "-i", index.url, "-q", "alpha==1.0")
    for python in (tmp_path / "link/venv/bin/python", tmp_path / "real/venv/bin/python", tmp_path / "link/venv"):
        answered_like_uv(["pip", "list", "--python", str(python)])
        answered_like_uv(["pip", "show", "alpha", "--python", str(python)])


# ---------------------------------------------------------------------------------------------
# 8. The C-level JSON: the keys of `read` are the documented ones


def header_read_paragraph() -> str:
    text = read_text(HEADER)
    start = text.index('read (engine "view" only)')
    return text[start:text.index(" * plan (only when asked)", start)]


def test_c_reply_read_packages_have_exactly_the_documented_keys(seeded):
    value = _native.call("run", {"argv": ["pip", "list", "--python", seeded.python]})
    assert value["engine"] == "view"
    assert set(value["read"]) <= READ_KEYS and value["read"]["command"] == "list"
    assert value["read"]["packages"]
    for package in value["read"]["packages"]:
        assert set(package) == PACKAGE_KEYS, package
        assert isinstance(package["editable"], bool)


def test_c_reply_read_show_records_have_exactly_the_documented_keys(seeded, project):
    value = _native.call("run", {"argv": ["pip", "show", "--python", seeded.python, "alpha", "edproj", "--files"]})
    assert value["engine"] == "view"
    assert set(value["read"]) <= READ_KEYS
    records = value["read"]["show"]
    assert [record["name"] for record in records] == ["alpha", "edproj"]
    for record in records:
        assert set(record) == SHOW_KEYS, record
        assert record["files"] == record_paths(seeded.site_packages, record["name"])
    assert records[1]["editable_project_location"] == project


def test_c_error_reply_of_a_failed_read_carries_read(broken):
    venv = broken("missing")
    with pytest.raises(CommandFailed) as caught:
        _native.call("run", {"argv": ["pip", "check", "--python", venv.python]})
    assert caught.value.kind == "failed"
    assert set(caught.value.read) <= READ_KEYS
    assert caught.value.read["command"] == "check" and len(caught.value.read["problems"]) == 1


def test_header_documents_every_key_of_read():
    paragraph = header_read_paragraph()
    for key in sorted(PACKAGE_KEYS | SHOW_KEYS | READ_KEYS):
        assert '"%s"' % key in paragraph, key
    for kind in ("registry", "url", "egg_info_file", "egg_info_directory", "legacy_editable"):
        assert '"%s"' % kind in paragraph, kind
    for command in ("list", "freeze", "show", "check"):
        assert '"%s"' % command in paragraph, command
    assert '"view"' in read_text(HEADER)


# ---------------------------------------------------------------------------------------------
# 9. Reads change nothing, and are counted


@pytest.mark.parametrize("case", [case for case in READ_CASES if case[0] != ["show"] or case[1]], ids=case_id)
def test_each_view_answer_changes_nothing_and_counts_one_read(seeded, case):
    command, options, _ = case
    before = reads(seeded.python)
    unchanged(seeded, lambda: ask(["pip", *command, "--python", seeded.python, *options]))
    assert reads(seeded.python) == before + 1


def test_show_without_a_name_fails_before_reading_any_environment(seeded):
    before = reads(seeded.python)
    ours = answered_like_uv(["pip", "show", "--python", seeded.python], 1)
    assert ours.read == commands.ReadAnswer(command="show")
    assert reads(seeded.python) == before


def test_a_read_left_to_uv_changes_nothing_and_counts_no_read(seeded):
    before = reads(seeded.python)
    unchanged(seeded, lambda: ask(["pip", "list", "--python", seeded.python, "-v"]))
    assert reads(seeded.python) == before


def test_reads_of_a_broken_environment_change_nothing(broken):
    venv = broken("missing")
    before = snapshot(venv.root)
    for words in (["check"], ["list", "--strict"], ["show", "beta", "alpha"], ["freeze", "--strict"]):
        ask(["pip", *words, "--python", venv.python])
    assert snapshot(venv.root) == before
