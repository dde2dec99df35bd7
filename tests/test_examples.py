"""The C and Go examples, built with the system toolchains against the header and the library that
``import uv_ffi`` loads, run against a real venv and the local index; then the disk is checked.

The toolchains are requirements of this test suite, not options: a missing compiler, make, go or
valgrind fails here (CI installs them), it is never skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from typing import List

import pytest

from uv_ffi import _native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = os.path.join(ROOT, "rust", "include")
C_DIR = os.path.join(ROOT, "examples", "c")
GO_DIR = os.path.join(ROOT, "examples", "go")

SPEC_A, SPEC_B = "alpha==1.0", "alpha==1.1"
#: The C program's plan step: PLAN_DISCARD is planned and dropped, PLAN_APPLY planned and applied.
#: Neither is alpha nor depends on anything, so each plan holds exactly one entry.
PLAN_DISCARD, PLAN_APPLY = "zeta==1.0", "delta==1.0"

#: Every step both programs must report as "ok", in order (the C program also forks, see below).
STEPS = [
    "info",
    "install A",
    "swap to B",
    "view_get",
    "invalid JSON",
    "bad command",
    "unknown request field",
    "NULL request",
    "omnipkg_uv_run_c 64-byte buffer",
    "omnipkg_uv_run_c needed-byte buffer",
    "omnipkg_uv_run_c invalid arguments",
]


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    assert path, "%r is not on PATH: install the Debian package %s (apt-get install -y %s)" % (
        name, package, package)
    return path


def library() -> str:
    path = os.path.abspath(_native._library_path())
    assert os.path.isfile(path), path
    return path


def run_tool(argv: List[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, "%s exited %d\n--- stdout\n%s\n--- stderr\n%s" % (
        " ".join(argv), done.returncode, done.stdout, done.stderr)
    return done


@pytest.fixture(scope="module")
def c_example(tmp_path_factory) -> str:
    require_tool("cc", "gcc")
    make = require_tool("make", "make")
    out = str(tmp_path_factory.mktemp("c-example"))
    run_tool([make, "-C", C_DIR, "UV_FFI_LIB=" + library(), "BUILD_DIR=" + out, "PYTHON=" + sys.executable])
    return os.path.join(out, "uv_ffi_example")


@pytest.fixture(scope="module")
def go_example(tmp_path_factory) -> str:
    require_tool("cc", "gcc")
    go = require_tool("go", "golang-go")
    out = str(tmp_path_factory.mktemp("go-example"))
    lib = library()
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="1",
        CGO_CFLAGS="-I" + INCLUDE,
        CGO_LDFLAGS="%s -Wl,-rpath,%s" % (lib, os.path.dirname(lib)),
        # The module uses the standard library only: nothing may be fetched.
        GOPROXY="off",
        GOTOOLCHAIN="local",
    )
    if not env.get("GOCACHE") and not env.get("HOME") and not env.get("XDG_CACHE_HOME"):
        env["GOCACHE"] = os.path.join(out, "gocache")
    binary = os.path.join(out, "uv_ffi_example_go")
    run_tool([go, "build", "-o", binary, "."], cwd=GO_DIR, env=env)
    return binary


#: The C program's two-phase install plan steps, after every other step.
PLAN_STEPS = ["plan to discard", "discard", "discard again", "plan to apply", "apply", "apply again"]

#: The C program's steps: a forked child starts an engine of its own, after the view step (left
#: out under valgrind); the plan steps come last.
C_STEPS_NO_FORK = STEPS + PLAN_STEPS
C_STEPS = STEPS[:4] + ["fork"] + STEPS[4:] + PLAN_STEPS


def check_steps(stdout: str, expected: List[str] = STEPS) -> None:
    """Every expected step printed one "ok" line, in order, and the summary says so."""
    lines = stdout.splitlines()
    steps = [re.match(r"^(ok  |FAIL) (.+?): ", line) for line in lines]
    seen = [(m.group(1).strip(), m.group(2)) for m in steps if m]
    assert [name for _, name in seen] == expected, stdout
    failed = [name for status, name in seen if status != "ok"]
    assert not failed, "failed steps %s\n%s" % (failed, stdout)
    assert lines[-1] == "PASSED: 0 failed step(s)", stdout


def check_disk(venv) -> None:
    assert venv.dist_infos() == ["alpha-1.1.dist-info"]
    assert venv.metadata_version("alpha") == "1.1"


def step_replies(stdout: str) -> dict:
    """Step name -> the JSON reply the C program printed on that step's line."""
    replies = {}
    for line in stdout.splitlines():
        m = re.match(r"^(?:ok  |FAIL) (.+?): (\{.*\})$", line)
        if m:
            replies[m.group(1)] = json.loads(m.group(2))
    return replies


def check_plan_steps(stdout: str) -> None:
    """The replies of the plan steps, read as JSON (the program itself only matches substrings)."""
    replies = step_replies(stdout)
    for step, spec in (("plan to discard", PLAN_DISCARD), ("plan to apply", PLAN_APPLY)):
        name, version = spec.split("==")
        value = replies[step]["value"]
        assert replies[step]["ok"] is True, stdout
        assert isinstance(value["plan_id"], int), stdout
        assert len(value["plan"]) == 1, stdout
        assert value["plan"][0][:2] == [name, version], stdout
        assert value["plan"][0][2] in ("remote", "cached"), stdout
        assert value["installed"] == [] and value["removed"] == [], stdout
    assert replies["plan to discard"]["value"]["plan_id"] != replies["plan to apply"]["value"]["plan_id"]
    assert replies["discard"] == {"ok": True, "value": {"discarded": True}}, stdout
    assert replies["discard again"] == {"ok": True, "value": {"discarded": False}}, stdout
    applied = replies["apply"]["value"]
    assert applied["installed"] == [PLAN_APPLY.split("==")] and applied["removed"] == [], stdout
    assert applied["exit_code"] == 0 and applied["plan"] is None and applied["plan_id"] is None, stdout
    assert replies["apply again"]["ok"] is False, stdout
    assert replies["apply again"]["error"]["kind"] == "stale_plan", stdout


def check_c_disk(venv) -> None:
    """alpha as the Go program leaves it, the applied plan's package installed, the discarded
    plan's package not."""
    assert venv.dist_infos() == sorted(["alpha-1.1.dist-info", "%s-%s.dist-info" % tuple(PLAN_APPLY.split("=="))])
    assert venv.metadata_version("alpha") == "1.1"
    assert venv.metadata_version(PLAN_APPLY.split("==")[0]) == PLAN_APPLY.split("==")[1]
    assert venv.metadata_version(PLAN_DISCARD.split("==")[0]) is None


def run_example(argv: List[str], timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, "exit %d\n--- stdout\n%s\n--- stderr\n%s" % (
        done.returncode, done.stdout, done.stderr)
    return done


def test_c_example(c_example, venv, index):
    done = run_example([c_example, venv.python, index.url, SPEC_A, SPEC_B, PLAN_DISCARD, PLAN_APPLY])
    print(done.stdout)  # shown in CI's log (pytest -rP)
    check_steps(done.stdout, C_STEPS)
    check_plan_steps(done.stdout)
    check_c_disk(venv)


def test_go_example(go_example, venv, index):
    done = run_example([go_example, venv.python, index.url, SPEC_A, SPEC_B])
    print(done.stdout)  # shown in CI's log (pytest -rP)
    check_steps(done.stdout)
    check_disk(venv)


def test_c_example_under_valgrind(c_example, venv, index, tmp_path):
    """No invalid reads or writes, no bad frees and nothing definitely lost, in the example or in
    the library, for the whole run (every reply freed, no write past a caller's buffer).

    What does not count, and why:
    - The library keeps a Tokio engine thread and process-wide state (HTTP client, cache, views)
      alive until the process exits, by design: "still reachable" and "possibly lost" (the
      thread's stack and TLS) are not errors, so only definite leaks count
      (--errors-for-leak-kinds=definite).
    - Memcheck reports a few conditional jumps on "uninitialised" values inside the optimised Rust
      of uv's dependencies (http's HeaderMap::get scratch buffer, an enum niche read in
      uv_python); they are false positives of LLVM-optimised code. --expensive-definedness-checks
      removes some; examples/c/valgrind.supp suppresses the rest, matched by the library's file
      (it is usually stripped, so function names cannot be used), for those two kinds only
      (Cond, ValueN). Every other error, and any such report in the example's own code, still fails
      the run through --error-exitcode=99.
    Children (the interpreter query the engine runs) are not traced, and the fork step is left
    out (UV_FFI_EXAMPLE_NO_FORK=1): a forked child forgets the parent's engine on purpose, without
    running its destructors, which memcheck would count as lost; test_c_example covers the fork.
    """
    valgrind = require_tool("valgrind", "valgrind")
    log = str(tmp_path / "valgrind.log")
    argv = [
        valgrind, "--leak-check=full", "--errors-for-leak-kinds=definite", "--error-exitcode=99",
        "--show-leak-kinds=definite", "--expensive-definedness-checks=yes",
        "--suppressions=" + os.path.join(C_DIR, "valgrind.supp"), "--num-callers=40", "--log-file=" + log,
        c_example, venv.python, index.url, SPEC_A, SPEC_B, PLAN_DISCARD, PLAN_APPLY,
    ]
    env = dict(os.environ, UV_FFI_EXAMPLE_NO_FORK="1")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    report = open(log, encoding="utf-8", errors="replace").read()
    assert done.returncode == 0, "exit %d (99: valgrind found errors)\n--- stdout\n%s\n--- valgrind\n%s" % (
        done.returncode, done.stdout, report)
    check_steps(done.stdout, C_STEPS_NO_FORK)
    check_plan_steps(done.stdout)
    # The summary, in CI's log (pytest -rP).
    print("\n".join(line for line in report.splitlines() if "SUMMARY" in line or "lost:" in line))
    assert re.search(r"ERROR SUMMARY: 0 errors from 0 contexts", report), report
    for problem in ("Invalid read", "Invalid write", "Invalid free", "Mismatched free", "uninitialised",
                    "definitely lost in"):
        assert problem not in report, report
    # With leaks of other kinds the LEAK SUMMARY is printed and must say 0 definitely lost;
    # without any, valgrind says every heap block was freed.
    assert re.search(r"definitely lost: 0 bytes in 0 blocks", report) or "All heap blocks were freed" in report, report
    check_c_disk(venv)
