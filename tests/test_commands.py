"""uv's other commands, run in-process, against the ``uv`` 0.12.5 binary on the same environment.

Each case runs the same words once through ``uv_ffi.install`` and once as ``uv <words>`` in a
subprocess (same environment variables, same working folder), and compares the exit code, what
was printed (per-side temporary paths and timings replaced) and the environment afterwards.
Commands that would change the host process are refused, and must leave it as it was. The
convenience functions of ``uv_ffi.commands`` are checked against uv's own output.

Everything is offline: conftest's pypiserver index on 127.0.0.1, plus a find-links folder with
a build backend made of the standard library (for an editable install). Every version a test
relies on is pinned: other modules publish releases to the shared index while the session runs.
"""

from __future__ import annotations

import faulthandler
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from typing import Dict, List, NamedTuple, Optional

import pytest

import diffkit
import uv_ffi
from conftest import Venv
from uv_ffi import commands
from uv_ffi.demo import find_uv
from uv_ffi.errors import CommandFailed, InvalidRequest, UvFfiError

UV = find_uv()
#: Seconds any subprocess (or in-process call, through the hang guard) may take.
DEADLINE = 120


@pytest.fixture(autouse=True)
def hang_guard():
    """A call that hangs inside native code ends the run with every thread's stack, not never."""
    faulthandler.dump_traceback_later(3 * DEADLINE, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# ---------------------------------------------------------------------------------------------
# Running both sides


class Ran(NamedTuple):
    code: int
    stdout: str
    stderr: str


def engine(argv: List[str]) -> Ran:
    """The words through uv_ffi: what a successful call printed, or what a failed one carried."""
    try:
        result = uv_ffi.install(argv)
    except CommandFailed as exc:
        return Ran(exc.exit_code, exc.stdout, exc.stderr)
    except UvFfiError as exc:  # uv's parser refused the words: its text is the message
        return Ran(exc.exit_code, "", exc.full_text() + "\n")
    return Ran(result.exit_code, result.stdout, result.stderr)


def uv(argv: List[str]) -> Ran:
    """The same words through the uv binary, with this process's variables and folder.

    The child inherits the process's own environment block, which is what the engine reads:
    it can hold more than ``os.environ`` (readline, loaded under pytest, exports ``COLUMNS`` and
    ``LINES`` there, and uv wraps help and errors to ``COLUMNS``)."""
    done = subprocess.run([UV, *argv], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          cwd=os.getcwd(), timeout=DEADLINE)
    return Ran(done.returncode, done.stdout, done.stderr)


_TIMING = re.compile(r" in \d+(\.\d+)?(ms|s|µs|m \d+s)\b")


def untimed(text: str) -> str:
    """``Resolved 4 packages in 28ms`` -> ``Resolved 4 packages in <T>``."""
    return _TIMING.sub(" in <T>", text)


def same_output(argv: List[str], code: int = 0, uv_argv: Optional[List[str]] = None,
                paths: Optional[diffkit.Paths] = None) -> Ran:
    """Run ``argv`` on both sides (uv gets ``uv_argv`` if given); assert uv exited ``code`` and
    the engine did the same and printed the same. Returns the engine's run."""
    ours, theirs = engine(argv), uv(uv_argv or argv)
    paths = paths or diffkit.Paths({})
    context = "\n--- engine ---\n%s%s\n--- uv ---\n%s%s" % (ours.stdout, ours.stderr, theirs.stdout, theirs.stderr)
    assert theirs.code == code, "uv itself exited %d, expected %d%s" % (theirs.code, code, context)
    assert ours.code == theirs.code, "exit code: engine %d, uv %d%s" % (ours.code, theirs.code, context)
    assert paths.text(ours.stdout) == paths.text(theirs.stdout), "stdout differs" + context
    assert untimed(paths.text(ours.stderr)) == untimed(paths.text(theirs.stderr)), "stderr differs" + context
    return ours


def snapshot(root: str, paths: Optional[diffkit.Paths] = None) -> Dict[str, dict]:
    """Every distribution and file under ``root`` (kind, mode, path-normalised content)."""
    paths = paths or diffkit.Paths({})
    return {"distributions": diffkit.distributions(root, paths), "files": diffkit.file_tree(root, paths)}


def uv_ok(*argv: str) -> None:
    """Set-up through the uv binary; fail loudly."""
    done = uv(list(argv))
    assert done.code == 0, "set-up failed: uv %s\n%s" % (" ".join(argv), done.stderr)


# ---------------------------------------------------------------------------------------------
# Environments


@pytest.fixture(scope="module")
def uv_binary():
    assert UV, "the uv 0.12.5 binary is needed (pip install uv==0.12.5)"
    version = subprocess.run([UV, "--version"], capture_output=True, text=True, timeout=DEADLINE).stdout
    assert version.split()[:2] == ["uv", "0.12.5"], version
    return UV


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> str:
    """A find-links folder with tinybackend, so local projects can be built offline."""
    folder = str(tmp_path_factory.mktemp("backend"))
    diffkit.tinybackend_wheel(folder)
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> str:
    """A local project (``edproj 0.3``, needs alpha), installed editable into ``seeded``."""
    return diffkit.write_project(str(tmp_path_factory.mktemp("edproj")), "edproj", "0.3", ["alpha"])


@pytest.fixture(scope="module")
def seeded(uv_binary, index, backend, project, tmp_path_factory) -> Venv:
    """An environment set up by the uv binary; read-only for the tests that share it:
    alpha 2.0, beta 1.0, gamma 1.0 + delta (an extra), mixed-case-name, edproj (editable)."""
    venv = Venv(str(tmp_path_factory.mktemp("seeded") / "venv"))
    uv_ok("pip", "install", "--python", venv.python, "-i", index.url, "-f", backend, "-q",
          "alpha==2.0", "beta==1.0", "gamma[fancy]==1.0", "delta==1.0", "Mixed_Case.Name==1.0", "-e", project)
    assert venv.installed() == {"alpha": "2.0", "beta": "1.0", "gamma": "1.0", "delta": "1.0",
                                "mixed-case-name": "1.0", "edproj": "0.3"}
    return venv


@pytest.fixture
def broken(uv_binary, index, make_venv):
    """A factory: an environment whose ``pip check`` finds ``kind`` of problem."""

    def factory(kind: str) -> Venv:
        venv = make_venv()
        uv_ok("pip", "install", "--python", venv.python, "-i", index.url, "-q", "beta==1.0", "alpha==2.0",
              "delta==1.0")
        if kind == "missing":  # beta needs alpha, which is gone
            uv_ok("pip", "uninstall", "--python", venv.python, "-q", "alpha")
        else:  # beta 2.0 needs alpha>=2.0, but alpha 1.0 is there
            uv_ok("pip", "install", "--python", venv.python, "-i", index.url, "-q", "--no-deps",
                  "beta==2.0", "alpha==1.0")
        return venv

    return factory


def unchanged(venv: Venv, action) -> None:
    """Run ``action``; the environment's files must be exactly as before."""
    before = snapshot(venv.root)
    action()
    after = snapshot(venv.root)
    assert after == before, "the environment changed:\n" + diffkit.differences(after, before)


# ---------------------------------------------------------------------------------------------
# pip list / freeze / show / check / tree: read-only, both sides on the same environment


@pytest.mark.parametrize("options", [
    [],
    ["--format", "columns"],
    ["--format", "freeze"],
    ["--format", "json"],
    ["--exclude-editable"],
    ["--format", "json", "--exclude-editable"],
    ["--format", "freeze", "--exclude-editable"],
    ["--exclude", "beta", "--format", "json"],
], ids=" ".join)
def test_pip_list_matches_uv(seeded, options):
    unchanged(seeded, lambda: same_output(["pip", "list", "--python", seeded.python, *options]))


@pytest.mark.parametrize("options", [[], ["--exclude-editable"]], ids=lambda o: " ".join(o) or "plain")
def test_pip_freeze_matches_uv(seeded, options):
    unchanged(seeded, lambda: same_output(["pip", "freeze", "--python", seeded.python, *options]))


@pytest.mark.parametrize("names, code", [
    (["alpha", "beta"], 0),
    (["edproj", "Mixed_Case.Name"], 0),
    (["--files", "alpha"], 0),
    (["alpha", "no-such-package"], 0),  # uv warns about the missing one and shows the other
    (["no-such-package"], 1),           # nothing found: uv fails
    ([], 1),                            # no name: uv warns and fails
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_pip_show_matches_uv(seeded, names, code):
    unchanged(seeded, lambda: same_output(["pip", "show", "--python", seeded.python, *names], code))


def test_pip_check_of_a_sound_environment_matches_uv(seeded):
    unchanged(seeded, lambda: same_output(["pip", "check", "--python", seeded.python]))


@pytest.mark.parametrize("kind", ["missing", "incompatible"])
def test_pip_check_of_a_broken_environment_matches_uv(broken, kind):
    venv = broken(kind)
    ran = engine(["pip", "check", "--python", venv.python])
    assert "Found 1 incompatibility" in ran.stderr
    unchanged(venv, lambda: same_output(["pip", "check", "--python", venv.python], 1))


@pytest.mark.parametrize("options", [[], ["--invert"], ["--package", "beta"], ["--depth", "0"]],
                         ids=lambda o: " ".join(o) or "plain")
def test_pip_tree_matches_uv(seeded, options):
    unchanged(seeded, lambda: same_output(["pip", "tree", "--python", seeded.python, *options]))


# ---------------------------------------------------------------------------------------------
# pip compile


@pytest.fixture
def requirements_in(tmp_path) -> str:
    path = tmp_path / "requirements.in"
    path.write_text("beta<2.1\ngamma[fancy]<1.1\nalpha<2.1\n")
    return str(path)


def test_pip_compile_resolves_as_uv_does(uv_binary, index, requirements_in):
    ran = same_output(["pip", "compile", requirements_in, "-i", index.url, "--no-header"])
    assert "beta==2.0\n" in ran.stdout and "delta==1.0\n" in ran.stdout


def split_header(text: str):
    """uv's header (the ``#`` lines before the first requirement) and the rest."""
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    return "".join(lines[:at]), "".join(lines[at:])


def test_pip_compile_writes_the_same_file(uv_binary, index, requirements_in, tmp_path):
    outputs = {side: str(tmp_path / ("out-%s.txt" % side)) for side in ("engine", "uv")}
    words = ["pip", "compile", requirements_in, "-i", index.url, "-o"]
    ours, theirs = engine(words + [outputs["engine"]]), uv(words + [outputs["uv"]])
    assert (ours.code, theirs.code) == (0, 0), ours.stderr + theirs.stderr
    written = {side: split_header(open(path).read()) for side, path in outputs.items()}
    assert written["engine"][1] == written["uv"][1]
    assert split_header(ours.stdout)[1] == split_header(theirs.stdout)[1] == written["uv"][1]


def test_pip_compile_header_names_the_command(uv_binary, index, requirements_in, tmp_path):
    """uv's header repeats the command it ran (index options left out); in-process, the command
    is the words given, not the host's own ``sys.argv``."""
    outputs = {side: str(tmp_path / ("out-%s.txt" % side)) for side in ("engine", "uv")}
    paths = diffkit.Paths({path: "<OUT>" for path in outputs.values()})
    words = ["pip", "compile", requirements_in, "-i", index.url, "-o"]
    ours, theirs = engine(words + [outputs["engine"]]), uv(words + [outputs["uv"]])
    assert (ours.code, theirs.code) == (0, 0), ours.stderr + theirs.stderr
    header = {side: paths.text(split_header(open(path).read())[0]) for side, path in outputs.items()}
    assert "#    uv pip compile %s -o <OUT>\n" % requirements_in in header["uv"]
    assert header["engine"] == header["uv"]
    assert paths.text(split_header(ours.stdout)[0]) == paths.text(split_header(theirs.stdout)[0])


# ---------------------------------------------------------------------------------------------
# pip sync and venv: each side on its own environment, compared afterwards


def test_pip_sync_matches_uv(uv_binary, index, make_venv, tmp_path):
    sides = {"engine": make_venv(), "uv": make_venv()}
    paths = diffkit.Paths({venv.root: "<VENV>" for venv in sides.values()})
    for venv in sides.values():
        uv_ok("pip", "install", "--python", venv.python, "-i", index.url, "-q", "beta==1.0", "alpha==2.0",
              "gamma==1.0")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("alpha==1.1\ngamma==1.0\nzeta==1.0\n")
    # Each side with a fresh cache of its own, so both prepare the same wheels and say so.
    words = {side: ["pip", "sync", "--python", venv.python, "-i", index.url, str(requirements),
                    "--cache-dir", str(tmp_path / ("cache-" + side))]
             for side, venv in sides.items()}

    result = uv_ffi.install(words["engine"])
    theirs = uv(words["uv"])

    assert theirs.code == result.exit_code == 0, theirs.stderr
    assert result.engine == "uv"
    assert (list(result.installed), list(result.removed)) == diffkit.reported_changes(theirs.stderr)
    assert list(result.installed) == [("alpha", "1.1"), ("zeta", "1.0")]
    assert list(result.removed) == [("alpha", "2.0"), ("beta", "1.0")]
    assert untimed(paths.text(result.stderr)) == untimed(paths.text(theirs.stderr))
    # (site-packages: `python -m venv` names each environment's prompt after its folder)
    ours_disk = snapshot(sides["engine"].site_packages, paths)
    uv_disk = snapshot(sides["uv"].site_packages, paths)
    assert ours_disk == uv_disk, diffkit.differences(ours_disk, uv_disk)
    # The warm engine sees what uv's command line did.
    again = uv_ffi.install(["pip", "install", "--python", sides["engine"].python, "-i", index.url, "alpha==1.1"])
    assert (again.engine, again.satisfied) == ("warm", True)
    assert sorted(uv_ffi.get_site_packages_cache(sides["engine"].python)) == [
        ("alpha", "1.1"), ("gamma", "1.0"), ("zeta", "1.0")]


def pyvenv_cfg(root: str, paths: diffkit.Paths) -> Dict[str, str]:
    with open(os.path.join(root, "pyvenv.cfg")) as handle:
        pairs = [line.split("=", 1) for line in handle if "=" in line]
    return {key.strip(): paths.text(value.strip()) for key, value in pairs}


def test_venv_matches_uv_and_the_engine_installs_into_it(uv_binary, index, tmp_path, monkeypatch):
    # uv prints an activation hint for the shell it detects: from SHELL, else from its parent
    # process, which is this process for the uv binary but this process's parent in-process.
    # Naming the shell makes both sides detect the same one.
    monkeypatch.setenv("SHELL", "/bin/bash")
    roots = {side: str(tmp_path / side / "env") for side in ("engine", "uv")}
    paths = diffkit.Paths({root: "<ENV>" for root in roots.values()})
    words = {side: ["venv", root, "--python", sys.executable] for side, root in roots.items()}

    ours, theirs = engine(words["engine"]), uv(words["uv"])

    assert ours.code == theirs.code == 0, ours.stderr + theirs.stderr
    assert (paths.text(ours.stdout), paths.text(ours.stderr)) == (paths.text(theirs.stdout), paths.text(theirs.stderr))
    assert pyvenv_cfg(roots["engine"], paths) == pyvenv_cfg(roots["uv"], paths)
    assert set(pyvenv_cfg(roots["uv"], paths)) >= {"home", "implementation", "uv", "version_info",
                                                   "include-system-site-packages"}
    ours_disk, uv_disk = snapshot(roots["engine"], paths), snapshot(roots["uv"], paths)
    assert ours_disk == uv_disk, diffkit.differences(ours_disk, uv_disk)

    # Then a package goes in: on the warm path for the engine, by uv for the other.
    python = {side: os.path.join(root, "bin", "python") for side, root in roots.items()}
    wanted = ["beta==1.0", "alpha==2.0"]
    result = uv_ffi.install(["pip", "install", "--python", python["engine"], "-i", index.url, *wanted])
    uv_ok("pip", "install", "--python", python["uv"], "-i", index.url, *wanted)
    assert result.engine == "warm"
    assert list(result.installed) == [("alpha", "2.0"), ("beta", "1.0")]
    ours_disk, uv_disk = snapshot(roots["engine"], paths), snapshot(roots["uv"], paths)
    assert ours_disk == uv_disk, diffkit.differences(ours_disk, uv_disk)
    assert diffkit.installed_pairs(roots["engine"]) == {("alpha", "2.0"), ("beta", "1.0")}


# ---------------------------------------------------------------------------------------------
# What uv's parser answers, and what it refuses


@pytest.mark.parametrize("argv", [["--version"], ["-V"], ["--help"], ["pip", "--help"], ["pip", "list", "--help"]],
                         ids=" ".join)
def test_version_and_help_match_uv(uv_binary, argv):
    same_output(argv)
    assert uv_ffi.install(argv).engine == "printed"


def test_an_unknown_command_fails_as_uv_does(uv_binary):
    with pytest.raises(InvalidRequest) as caught:
        uv_ffi.install(["frobnicate"])
    theirs = uv(["frobnicate"])
    assert caught.value.exit_code == theirs.code == 2
    assert diffkit.first_error_line(caught.value.message) == diffkit.first_error_line(theirs.stderr)
    assert diffkit.first_error_line(theirs.stderr) == "unrecognized subcommand 'frobnicate'"
    assert caught.value.full_text() == theirs.stderr.rstrip("\n")


def host_state():
    """What a refused command must leave as it was."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    return os.getcwd(), dict(os.environ), handlers


def folder_state(root: str) -> Dict[str, str]:
    return diffkit.file_tree(root, diffkit.Paths({}))


REFUSED = {
    "run": ["run", "--no-project", "--python", "{python}", "python", "-c", "open('{work}/ran', 'w')"],
    "tool run": ["tool", "run", "--offline", "zeta"],
    "uvx": ["tool", "uvx", "--offline", "zeta"],
    "add": ["add", "--project", "{work}", "--offline", "alpha"],
    "publish": ["publish", "--dry-run", "--publish-url", "http://127.0.0.1:9/", "{work}/dist/*"],
    "auth login": ["auth", "login", "http://127.0.0.1:9/"],
    "auth helper": ["auth", "helper", "--protocol", "bazel", "get"],
    "--directory": ["--directory", "{work}", "pip", "list"],
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_commands_that_would_change_the_host_are_refused(name, venv, tmp_path):
    work = tmp_path / "work"
    (work / "dist").mkdir(parents=True)
    (work / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "0.1"\ndependencies = []\n')
    argv = [word.format(python=venv.python, work=work) for word in REFUSED[name]]
    before, files_before = host_state(), folder_state(str(work))

    with pytest.raises(InvalidRequest) as caught:
        uv_ffi.install(argv)
    code, installed, removed, error = uv_ffi.run(argv)

    assert caught.value.exit_code == code == 2
    assert (installed, removed) == ([], [])
    assert "cannot run inside a host process" in caught.value.message
    assert "cannot run inside a host process" in error
    assert caught.value.message.startswith("`uv %s`" % ("tool run" if name == "uvx" else name))
    assert host_state() == before
    assert folder_state(str(work)) == files_before
    assert venv.installed() == {}


def test_auth_commands_that_neither_prompt_nor_read_stdin_run_as_uv_runs_them():
    theirs = subprocess.run([UV, "auth", "dir"], capture_output=True, text=True, timeout=DEADLINE)
    ours = uv_ffi.install(["auth", "dir"])
    assert (ours.engine, ours.exit_code, ours.stdout) == ("uv", theirs.returncode, theirs.stdout)


# ---------------------------------------------------------------------------------------------
# The tuple API and the command line print what uv prints


def test_run_writes_uvs_output_to_sys_stdout(seeded, capsys):
    theirs = uv(["pip", "list", "--python", seeded.python])
    capsys.readouterr()
    assert uv_ffi.run("pip list --python %s" % shlex.quote(seeded.python)) == (0, [], [], "")
    printed = capsys.readouterr()
    assert theirs.code == 0
    assert printed.out == theirs.stdout
    assert printed.err == theirs.stderr


@pytest.mark.parametrize("words, code", [
    (["pip", "list", "--python", "{python}"], 0),
    (["pip", "freeze", "--python", "{python}"], 0),
    (["pip", "check", "--python", "{python}"], 0),
    (["--version"], 0),
    (["frobnicate"], 2),
    (["pip", "show", "--python", "{python}", "no-such-package"], 1),
], ids=lambda v: " ".join(w for w in v if w not in ("--python", "{python}")) if isinstance(v, list) else None)
def test_python_m_uv_ffi_run_prints_what_uv_prints(seeded, words, code):
    argv = [word.format(python=seeded.python) for word in words]
    done = subprocess.run([sys.executable, "-m", "uv_ffi", "run", *argv], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, cwd=os.getcwd(), timeout=DEADLINE)
    theirs = uv(argv)
    assert theirs.code == code, theirs.stderr
    assert done.returncode == theirs.code, done.stderr
    assert done.stdout == theirs.stdout
    assert untimed(done.stderr) == untimed(theirs.stderr)


# ---------------------------------------------------------------------------------------------
# uv_ffi.commands against uv's output


def uv_stdout(*argv: str) -> str:
    done = uv(list(argv))
    assert done.code == 0, done.stderr
    return done.stdout


def test_list_packages(seeded, project):
    for options, exclude in (([], False), (["--exclude-editable"], True)):
        rows = json.loads(uv_stdout("pip", "list", "--python", seeded.python, "--format", "json", *options))
        expected = [(row["name"], row["version"], row.get("editable_project_location")) for row in rows]
        listed = commands.list_packages(seeded.python, exclude_editable=exclude)
        assert [(p.name, p.version, p.editable_project_location) for p in listed] == expected
    packages = {package.name: package for package in commands.list_packages(seeded.python)}
    assert {name: package.version for name, package in packages.items()} == seeded.installed()
    assert packages["edproj"].editable_project_location == project
    assert packages["alpha"].editable_project_location is None
    assert "edproj" not in {p.name for p in commands.list_packages(seeded.python, exclude_editable=True)}


def test_freeze_and_freeze_pairs(seeded, project):
    text = uv_stdout("pip", "freeze", "--python", seeded.python)
    assert commands.freeze(seeded.python) == text
    assert "-e file://%s\n" % project in text
    assert commands.freeze_pairs(seeded.python) == [
        ("alpha", "2.0"), ("beta", "1.0"), ("delta", "1.0"), ("gamma", "1.0"), ("mixed-case-name", "1.0")]
    assert commands.freeze_pairs(seeded.python) == [
        tuple(line.split("==")) for line in text.splitlines() if not line.startswith("-e ")]


def render(records: List[commands.ShowRecord]) -> str:
    """The records written back as uv prints them."""
    blocks = []
    for record in records:
        lines = ["%s: %s" % (key, value) if value else key + ":" for key, value in record.fields.items()]
        if record.files is not None:
            lines += ["Files:"] + ["  " + path for path in record.files]
        blocks.append("\n".join(lines) + "\n")
    return "---\n".join(blocks)


@pytest.mark.parametrize("names, files", [
    (["beta", "alpha"], False),
    (["edproj"], False),
    (["alpha", "no-such-package"], False),
    (["alpha", "gamma"], True),
], ids=lambda v: " ".join(v) if isinstance(v, list) else ("files" if v else ""))
def test_show(seeded, names, files):
    records = commands.show(*names, python=seeded.python, files=files)
    expected = uv_stdout("pip", "show", "--python", seeded.python, *names, *(["--files"] if files else []))
    assert render(records) == expected
    assert [record.name for record in records] == sorted(set(names) - {"no-such-package"})


def test_show_fields(seeded, project):
    alpha, beta, edproj = commands.show("alpha", "beta", "edproj", python=seeded.python)
    assert (alpha.name, alpha.version, alpha.requires, alpha.required_by) == ("alpha", "2.0", [], ["beta", "edproj"])
    assert (beta.requires, beta.required_by) == (["alpha"], [])
    assert alpha.location == beta.location == seeded.site_packages
    assert (alpha.editable_project_location, edproj.editable_project_location) == (None, project)
    assert alpha.files is None
    assert list(edproj.fields) == ["Name", "Version", "Location", "Editable project location", "Requires",
                                   "Required-by"]
    (with_files,) = commands.show("alpha", python=seeded.python, files=True)
    assert "alpha/__init__.py" in with_files.files


@pytest.mark.parametrize("names", [["no-such-package"], []], ids=["missing", "no-name"])
def test_show_fails_as_uv_does(seeded, names):
    theirs = uv(["pip", "show", "--python", seeded.python, *names])
    with pytest.raises(CommandFailed) as caught:
        commands.show(*names, python=seeded.python)
    assert caught.value.exit_code == theirs.code == 1
    assert caught.value.stderr == theirs.stderr
    assert "warning:" in theirs.stderr


def test_check(seeded, broken):
    assert commands.check(seeded.python) == commands.CheckResult(ok=True, problems=[])
    for kind, problem in (
        ("missing", "The package `beta` requires `alpha>=1.0`, but it's not installed"),
        ("incompatible", "The package `beta` requires `alpha>=2.0`, but `1.0` is installed"),
    ):
        venv = broken(kind)
        theirs = uv(["pip", "check", "--python", venv.python])
        assert theirs.code == 1
        uv_problems = theirs.stderr.split("Found 1 incompatibility\n", 1)[1].splitlines()
        assert commands.check(venv.python) == commands.CheckResult(ok=False, problems=uv_problems)
        assert uv_problems == [problem]


def test_check_raises_for_a_missing_interpreter(uv_binary, tmp_path):
    missing = str(tmp_path / "nowhere" / "bin" / "python")
    theirs = uv(["pip", "check", "--python", missing])
    with pytest.raises(UvFfiError) as caught:
        commands.check(missing)
    assert caught.value.exit_code == theirs.code == 2
    assert diffkit.first_error_line(caught.value.full_text()) == diffkit.first_error_line(theirs.stderr)


def test_check_groups_a_problem_that_spans_lines():
    stderr = ("Checked 3 packages in 0.2ms\nFound 2 incompatibilities\n"
              "The package `alpha` has multiple installed distributions:\n  - /a\n  - /b\n"
              "The package `beta` requires `alpha>=1.0`, but it's not installed\n")
    assert commands._check_problems(stderr) == [
        "The package `alpha` has multiple installed distributions:\n  - /a\n  - /b",
        "The package `beta` requires `alpha>=1.0`, but it's not installed",
    ]
    assert commands._check_problems("error: something else\n") is None


@pytest.mark.parametrize(
    "variable, value, argv, route, option",
    [
        # Variables of options the warm engine honours keep the call on it, as the option would.
        ("UV_INDEX_URL", "http://127.0.0.1:9/simple", ["pip", "install", "alpha"], "warm", "index_url"),
        ("UV_PYTHON", sys.executable, ["pip", "install", "alpha"], "warm", "python"),
        ("UV_PYTHON", sys.executable, ["pip", "list"], "read", "python"),
        # A variable of an option it leaves to uv sends the call to uv, as the option would.
        ("UV_EXCLUDE_NEWER", "2022-06-01", ["pip", "install", "alpha"], "uv", "exclude_newer"),
    ],
)
def test_a_variable_routes_the_call_as_its_option_would(monkeypatch, variable, value, argv, route, option):
    # Which variable stands for which option is read from uv's own command definitions, once.
    assert uv_ffi.parse_command(argv)["route"] in ("warm", "read")
    monkeypatch.setenv(variable, value)
    reply = uv_ffi.parse_command(argv)
    assert reply["route"] == route, reply
    assert option in reply["explicit"]
