"""Fuzzing the C boundary through cffi: whatever a caller passes, every uv_ffi_* entry point
answers with a well-formed JSON envelope (never a crash, never a hang), every reply is freed,
and omnipkg_uv_run_c never writes past the buffer it is given. A soak checks that thousands of
mixed calls do not grow the process.

Safety of fuzzing ``run``: a random command could be ``venv``, ``cache clean`` or an install
into a real environment. So ``run`` only ever gets requests that cannot act: invalid JSON,
invalid UTF-8, requests whose fields have the wrong type (refused before anything runs), and
argv lists of random words placed after a fixed prefix that makes the command a dry run with
no index, offline, on a throwaway venv. Random words never start with ``-`` (no option can be
smuggled in, except a few harmless ones drawn from a fixed list), and relative paths resolve
against an empty throwaway folder. Top-level JSON arrays are never sent to ``run``: serde reads
a struct from an array positionally (``["cache clean"]`` would be a command).

Hangs: every native call runs on a helper thread with a time limit, so a hang fails the test
and names the input instead of blocking the run. The fuzzers that make the engine run commands
run in a child process, so that an input which wedges the engine cannot leave this session's
engine stuck for the tests after it.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import shlex
import subprocess
import sys
import threading
from typing import Tuple

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from uv_ffi._native import ffi, lib

#: Every entry point that takes a request (debug_panic is left out: it panics on purpose).
ENTRY_POINTS = [
    "info", "parse", "run", "view_get", "view_patch", "view_invalidate", "view_fingerprint",
    "index_clear",
]

#: The error kinds the header lists.
KINDS = {
    "invalid_json", "invalid_command", "invalid_requirement", "python_not_found",
    "externally_managed", "resolution", "index", "install", "panic", "failed", "internal",
}

#: Each request field the header documents, by entry point, with its type:
#: "str", "bool", "int" (unsigned), "[str]" or "[[str, str]]".
FIELDS = {
    "info": {},
    "parse": {"command": "str", "argv": "[str]", "cwd": "str"},
    "run": {
        "command": "str", "argv": "[str]", "cwd": "str", "check": "bool", "heal": "bool",
        "fresh_index": "bool", "index_ttl_ms": "int",
    },
    "view_get": {"python": "str", "check": "bool"},
    "view_patch": {"python": "str", "installed": "[[str, str]]", "removed": "[[str, str]]"},
    "view_invalidate": {"python": "str", "check": "bool"},
    "view_fingerprint": {"python": "str", "check": "bool"},
    "index_clear": {},
}

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


# --- the throwaway world ----------------------------------------------------------------------


class Place:
    """A venv already on disk: its interpreter and site-packages (rebuilt from paths in the
    isolated child processes)."""

    def __init__(self, python: str, site_packages: str) -> None:
        self.python = python
        self.site_packages = site_packages

    def dist_infos(self):
        return sorted(e for e in os.listdir(self.site_packages) if e.endswith(".dist-info"))


@pytest.fixture(scope="module")
def world(tmp_path_factory, index):
    """A throwaway venv (kept empty), a seeded one (alpha 1.0, for warm no-ops), an empty
    folder for relative paths, and the safe command prefix."""
    from conftest import Venv

    root = tmp_path_factory.mktemp("fuzz")
    empty = Venv(str(root / "empty-venv"))
    seeded = Venv(str(root / "seeded-venv"))
    folder = root / "cwd"
    folder.mkdir()
    noop = "pip install --python %s -i %s alpha==1.0" % (seeded.python, index.url)
    reply = call("run", json.dumps({"command": noop}).encode())
    assert reply["ok"], reply
    assert seeded.dist_infos() == ["alpha-1.0.dist-info"]
    return make_world(
        (empty.python, empty.site_packages), (seeded.python, seeded.site_packages), str(folder), noop,
    )


def make_world(empty, seeded, folder: str, noop: str) -> dict:
    empty, seeded = Place(*empty), Place(*seeded)
    prefix = ["pip", "install", "--python", empty.python, "--no-index", "--offline", "--dry-run"]
    return {
        "empty": empty, "seeded": seeded, "cwd": folder, "prefix": prefix, "noop": noop,
        "plain": [[empty.python, empty.site_packages], [seeded.python, seeded.site_packages], folder, noop],
    }


def untouched(world) -> None:
    """Nothing the fuzzed calls did may show on disk."""
    assert world["empty"].dist_infos() == []
    assert world["seeded"].dist_infos() == ["alpha-1.0.dist-info"]
    assert os.listdir(world["cwd"]) == []


# --- calling and checking ---------------------------------------------------------------------


def check_envelope(reply) -> None:
    assert isinstance(reply, dict), reply
    assert isinstance(reply.get("ok"), bool), reply
    if reply["ok"]:
        assert set(reply) == {"ok", "value"}, reply
        assert isinstance(reply["value"], dict), reply
        return
    assert set(reply) == {"ok", "error"}, reply
    error = reply["error"]
    assert isinstance(error, dict), reply
    assert {"kind", "message", "hints", "exit_code"} <= set(error), error
    assert set(error) <= {"kind", "message", "hints", "exit_code", "retry", "stdout", "stderr"}, error
    assert error["kind"] in KINDS, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["hints"], list) and all(isinstance(h, str) for h in error["hints"]), error
    assert isinstance(error["exit_code"], int) and not isinstance(error["exit_code"], bool), error
    assert error["exit_code"] != 0, error


#: Seconds one call may take before it counts as hung.
CALL_TIMEOUT = float(os.environ.get("UV_FFI_FUZZ_CALL_TIMEOUT", "60"))

#: Set when a call hung: the engine thread is stuck for good, so later calls fail at once with
#: the culprit's description (instead of hanging, and instead of letting hypothesis shrink to
#: an unrelated example without saying which input wedged the engine).
_WEDGED: list = []


class EngineHung(AssertionError):
    pass


def describe(function: str, request) -> str:
    if request == ffi.NULL:
        return "uv_ffi_%s(NULL)" % function
    text = bytes(request)
    return "uv_ffi_%s(%r%s)" % (function, text[:400], "..." if len(text) > 400 else "")


def bounded(work, what: str):
    """Run a native call on a helper thread and wait at most CALL_TIMEOUT: a hang becomes a
    failure naming the input, never a stuck test run."""
    if _WEDGED:
        raise EngineHung("the engine has been stuck since this call hung: " + _WEDGED[0])
    outcome = {}

    def target():
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="fuzz-call", daemon=True)
    thread.start()
    thread.join(CALL_TIMEOUT)
    if thread.is_alive():
        _WEDGED.append(what)
        raise EngineHung("no reply after %.0f s: %s" % (CALL_TIMEOUT, what))
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _raw_call(function: str, request) -> bytes:
    pointer = getattr(lib, "uv_ffi_" + function)(request)
    assert pointer != ffi.NULL, "uv_ffi_%s returned NULL" % function
    try:
        return ffi.string(pointer)
    finally:
        lib.uv_ffi_string_free(pointer)


def call(function: str, request, direct: bool = False) -> dict:
    """Call uv_ffi_<function> with raw bytes (or ffi.NULL); check and free the reply.
    ``direct``: on this thread (the caller bounds the wait some other way)."""
    if direct:
        raw = _raw_call(function, request)
    else:
        raw = bounded(lambda: _raw_call(function, request), describe(function, request))
    reply = json.loads(raw.decode("utf-8"))  # strict: the reply is UTF-8 JSON
    check_envelope(reply)
    return reply


def parses_as_json(data: bytes) -> bool:
    try:
        json.loads(data.decode("utf-8", "replace"))
    except ValueError:
        return False
    return True


# --- strategies -------------------------------------------------------------------------------

#: Bytes a C string can carry.
no_nul_bytes = st.binary(max_size=300).map(lambda b: b.replace(b"\0", b""))

#: Bytes that are certainly not UTF-8: a lone continuation byte, an overlong form, a surrogate,
#: a truncated sequence, or 0xFF, spliced somewhere into otherwise arbitrary bytes.
BAD_UTF8 = [b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xff", b"\xfe\xff"]


@st.composite
def invalid_utf8(draw):
    data = draw(no_nul_bytes)
    cut = draw(st.integers(0, len(data)))
    return data[:cut] + draw(st.sampled_from(BAD_UTF8)) + data[cut:]


scalars_no_str = st.one_of(
    st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    st.one_of(st.none(), scalars_no_str, st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def wrong_values(kind: str):
    """JSON values that are not of the field's type (and not null, which an optional field
    accepts as absent)."""
    lists_of_any = st.lists(json_values, max_size=4)
    objects = st.dictionaries(st.text(max_size=8), json_values, max_size=3)
    if kind == "str":
        return st.one_of(scalars_no_str, lists_of_any, objects)
    if kind == "bool":
        return st.one_of(
            st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10),
            lists_of_any, objects,
        )
    if kind == "int":
        return st.one_of(
            st.booleans(), st.integers(max_value=-1), st.integers(min_value=2 ** 64, max_value=2 ** 80),
            st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)),
            st.text(max_size=10), lists_of_any, objects,
        )
    if kind == "[str]":
        return st.one_of(
            scalars_no_str, st.text(max_size=10), objects,
            st.lists(st.one_of(scalars_no_str, lists_of_any, objects), min_size=1, max_size=4),
        )
    if kind == "[[str, str]]":
        bad_pair = st.one_of(
            scalars_no_str, st.text(max_size=10), objects,
            st.lists(st.text(max_size=6), max_size=1),
            st.lists(st.text(max_size=6), min_size=3, max_size=4),
            st.tuples(scalars_no_str, st.text(max_size=6)).map(list),
            st.tuples(st.text(max_size=6), scalars_no_str).map(list),
        )
        return st.one_of(
            scalars_no_str, st.text(max_size=10), objects, st.lists(bad_pair, min_size=1, max_size=3),
        )
    raise AssertionError(kind)


def valid_value(world, function: str, field: str, kind: str, draw):
    """A value of the right type, safe for every entry point (run's commands are dry runs)."""
    if field == "python":
        return draw(st.sampled_from([world["empty"].python, world["seeded"].python, "/no/such/python"]))
    if field == "cwd":
        return world["cwd"]
    if field in ("command", "argv"):
        words = world["prefix"] + draw(st.lists(safe_word, max_size=3))
        return shlex.join(words) if field == "command" else words
    if kind == "bool":
        return draw(st.booleans())
    if kind == "int":
        return draw(st.integers(0, 2 ** 40))
    if kind == "[[str, str]]":
        return draw(st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6)).map(list), max_size=3))
    raise AssertionError((function, field, kind))


#: Words after the safe prefix: never an option (no leading '-'), except a few harmless flags.
HARMLESS_FLAGS = ["--upgrade", "-U", "--reinstall", "--no-deps", "--pre", "--quiet", "--strict"]
safe_word = st.one_of(
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=15,
    ).filter(lambda w: not w.startswith("-")),
    st.sampled_from(["alpha", "alpha==1.0", "beta>=1", "pip", "install", "cache", "clean", "venv", ".", "..",
                     "/", "x @ file:///nonexistent", "alpha[extra]", "'", '"', "\\"]),
    st.sampled_from(HARMLESS_FLAGS),
)


# --- fuzz tests -------------------------------------------------------------------------------


@SETTINGS
@given(data=no_nul_bytes, function=st.sampled_from(ENTRY_POINTS))
def test_arbitrary_bytes(world, data, function):
    if function == "run":
        # Valid JSON could be a command; run gets only what cannot parse.
        assume(not parses_as_json(data))
    reply = call(function, data)
    if function == "run":
        assert reply["ok"] is False and reply["error"]["kind"] == "invalid_json", reply
    untouched(world)


@SETTINGS
@given(data=invalid_utf8(), function=st.sampled_from(ENTRY_POINTS))
def test_invalid_utf8(world, data, function):
    reply = call(function, data)
    assert reply["ok"] is False and reply["error"]["kind"] == "invalid_json", reply
    untouched(world)


@SETTINGS
@given(st.data())
def test_wrong_type_in_every_documented_field(world, data):
    function = data.draw(st.sampled_from([f for f in ENTRY_POINTS if FIELDS[f]]))
    fields = FIELDS[function]
    wrong_field = data.draw(st.sampled_from(sorted(fields)))
    request = {}
    # Some of the other fields, with values of the right type...
    for field, kind in fields.items():
        if field != wrong_field and data.draw(st.booleans()):
            request[field] = valid_value(world, function, field, kind, data.draw)
    # ...and one with a value of the wrong type: the whole request is refused before anything runs.
    request[wrong_field] = data.draw(wrong_values(fields[wrong_field]))
    reply = call(function, json.dumps(request).encode())
    assert reply["ok"] is False and reply["error"]["kind"] == "invalid_json", (request, reply)
    untouched(world)


@SETTINGS
@given(function=st.sampled_from(["info", "index_clear"]), field=st.text(max_size=10), value=json_values)
def test_fields_the_header_does_not_document_are_refused(world, function, field, value):
    reply = call(function, json.dumps({field: value}).encode())
    assert reply["ok"] is False and reply["error"]["kind"] == "invalid_json", reply


@SETTINGS
@given(
    function=st.sampled_from([f for f in ENTRY_POINTS if f != "run"]),
    value=json_values,
)
def test_any_json_value_as_the_request(world, function, value):
    """Any JSON document (object or not) gets an envelope; run is left out (an array would be
    read positionally, see the module docstring)."""
    call(function, json.dumps(value).encode())
    untouched(world)


@SETTINGS
@given(value=st.one_of(scalars_no_str, st.text(max_size=30), st.lists(scalars_no_str, min_size=1, max_size=4)))
def test_run_refuses_requests_that_are_not_objects(world, value):
    """Scalars and arrays of numbers/booleans (an array whose first element is not a string
    cannot be read as a command)."""
    reply = call("run", json.dumps(value).encode())
    assert reply["ok"] is False and reply["error"]["kind"] == "invalid_json", reply
    untouched(world)


# The two fuzzers below make the engine run commands (dry runs). A command that wedges the
# engine would leave it stuck for the rest of the process, so they run in a child process of
# their own: a hang there fails one test, with the input that caused it, and the engine of this
# test session stays healthy for everything after it.

ISOLATED_CHILD = r"""
import json, os, sys, traceback
sys.path[:0] = json.loads(sys.argv[1])
import test_fuzz
world = test_fuzz.make_world(*json.loads(sys.argv[3]))
code = 0
try:
    getattr(test_fuzz, sys.argv[2])(world)
except BaseException:
    traceback.print_exc()
    code = 1
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)  # without waiting for a call that may still hang on a helper thread
"""


def run_isolated(world, fuzzer: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    env["UV_FFI_FUZZ_CALL_TIMEOUT"] = "20"
    argv = [sys.executable, "-c", ISOLATED_CHILD, json.dumps([here, os.path.dirname(here)]),
            fuzzer, json.dumps(world["plain"])]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail("%s did not finish within 240 s:\n%s" % (fuzzer, exc.stderr))
    assert out.returncode == 0, "%s failed in its child process:\n%s%s" % (fuzzer, out.stdout, out.stderr)
    untouched(world)


def test_run_with_random_words_after_a_dry_run_prefix(world):
    run_isolated(world, "fuzz_run_words")


def test_omnipkg_uv_run_c_buffers(world):
    run_isolated(world, "fuzz_omnipkg_buffers")


@SETTINGS
@given(
    words=st.lists(safe_word, max_size=6),
    check=st.booleans(), heal=st.booleans(), fresh=st.booleans(), ttl=st.integers(0, 10 ** 7),
    as_command=st.booleans(),
)
def fuzz_run_words(world, words, check, heal, fresh, ttl, as_command):
    argv = world["prefix"] + words
    request = {"cwd": world["cwd"], "check": check, "heal": heal, "fresh_index": fresh, "index_ttl_ms": ttl}
    if as_command:
        request["command"] = shlex.join(argv)
    else:
        request["argv"] = argv
    reply = call("run", json.dumps(request).encode())
    if reply["ok"]:
        assert reply["value"]["dry_run"] is True and reply["value"]["removed"] == [], reply
    untouched(world)


NESTINGS = [
    b"[" * 10_000,
    b"[" * 10_000 + b"]" * 10_000,
    b"{\"a\":" * 10_000,
    b"{\"a\":" * 10_000 + b"1" + b"}" * 10_000,
    b'{"command":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    b'{"python":' + b"{\"a\":" * 10_000 + b"}",
    b'{"installed":' + b"[" * 10_000,
]


@pytest.mark.parametrize("function", ENTRY_POINTS)
def test_deeply_nested_json(world, function):
    for data in NESTINGS:
        reply = call(function, data)
        assert reply["ok"] is False and reply["error"]["kind"] == "invalid_json", (function, data[:20])
    untouched(world)


@pytest.mark.parametrize("function", ENTRY_POINTS)
def test_huge_requests(world, function):
    huge = "x" * (5 * 1024 * 1024)
    requests = [
        json.dumps({"surprise": huge}),                    # an unknown field: refused
        json.dumps([1] * (1024 * 1024)),                    # a huge array of numbers
        '"' + huge + '"',                                   # a huge bare string
        " " * (5 * 1024 * 1024) + "{",                     # huge whitespace, then broken
    ]
    for field, kind in FIELDS[function].items():
        if function == "run" and field in ("command", "argv"):
            requests.append(json.dumps({"argv": world["prefix"] + [huge], "cwd": world["cwd"]}))
        elif kind == "str" and function != "run":
            requests.append(json.dumps({field: huge}))
        elif kind == "str":  # run's cwd: with a command of the wrong type, refused before use
            requests.append(json.dumps({field: huge, "command": 5}))
    for request in requests:
        call(function, request.encode())
    untouched(world)


@pytest.mark.parametrize("function", ENTRY_POINTS)
def test_null_request(function):
    reply = call(function, ffi.NULL)
    assert reply["ok"] is False and reply["error"]["kind"] == "invalid_json"


def test_string_free_accepts_null():
    lib.uv_ffi_string_free(ffi.NULL)


def test_requests_that_are_arrays_are_refused():
    """The header documents every request as a JSON object, and unknown fields are refused;
    yet serde's derived structs also accept a JSON array, read positionally. Through run that
    means ``[null, ["cache", "clean"]]`` is a command. Checked through parse, which runs
    nothing."""
    for request in (b'["pip install alpha"]', b'[null, ["pip", "list"]]'):
        reply = call("parse", request)
        assert reply["ok"] is False and reply["error"]["kind"] == "invalid_json", (request, reply)
    reply = call("view_get", b"[]")
    assert reply["ok"] is False and reply["error"]["kind"] == "invalid_json", reply


# --- omnipkg_uv_run_c -------------------------------------------------------------------------

SENTINEL = b"\xa5"
SLACK = 32


@SETTINGS
@given(
    size=st.integers(0, 300),
    which=st.sampled_from(["dry-run", "noop", "null-cmd", "null-out"]),
    words=st.lists(safe_word, max_size=3),
)
def fuzz_omnipkg_buffers(world, size, which, words):
    if which == "noop":
        command = world["noop"].encode()
    else:
        command = shlex.join(world["prefix"] + words).encode("utf-8", "surrogatepass")
    assume(b"\0" not in command)
    buffer = ffi.new("char[]", size + SLACK)
    ffi.memmove(buffer, SENTINEL * (size + SLACK), size + SLACK)
    cmd = ffi.NULL if which == "null-cmd" else command
    out = ffi.NULL if which == "null-out" else buffer
    code = bounded(
        lambda: lib.omnipkg_uv_run_c(cmd, out, size),
        "omnipkg_uv_run_c(%r, max_out=%d)" % (None if cmd == ffi.NULL else cmd, size),
    )
    written = ffi.unpack(buffer, size + SLACK)
    assert written[size:] == SENTINEL * SLACK, "wrote past max_out=%d" % size
    if which in ("null-cmd", "null-out") or size < 64:
        assert code == -1
        assert written == SENTINEL * (size + SLACK), "wrote although it refused"
        untouched(world)
        return
    end = written.index(b"\0")  # NUL-terminated within the buffer
    assert end < size
    reply = json.loads(written[:end].decode("utf-8"))
    if code == -2:
        assert set(reply) == {"error", "needed"} and reply["error"] == "buffer_too_small"
        assert reply["needed"] > size
    else:
        assert code in (0, 1, 2), code
        assert {"installed", "removed", "error"} <= set(reply) <= {"installed", "removed", "error", "stdout"}
        assert reply["installed"] == [] and reply["removed"] == []
        assert (code == 0) == (reply["error"] == "")
    if which == "noop":
        assert code in (0, -2)
    untouched(world)


def test_omnipkg_uv_run_c_negative_sizes(world):
    buffer = ffi.new("char[]", 64)
    for size in (-1, -(2 ** 31), 63):
        assert lib.omnipkg_uv_run_c(world["noop"].encode(), buffer, size) == -1


# --- soak -------------------------------------------------------------------------------------


def rss_bytes() -> Tuple[int, int]:
    """(resident, resident anonymous) bytes from /proc/self/statm. The anonymous part
    (resident minus shared) is what a leak grows; the shared part moves with the pages of the
    85 MB library that happen to be touched (and re-read after a rebuild replaced its file)."""
    with open("/proc/self/statm") as handle:
        fields = [int(field) for field in handle.read().split()]
    page = os.sysconf("SC_PAGE_SIZE")
    return fields[1] * page, (fields[1] - fields[2]) * page


def test_soak_mixed_calls_do_not_grow_the_process(world):
    """10,000 calls mixing good and bad requests: RSS measured after 1,000 warm-up calls and at
    the end grows by less than 8 MiB. In a process of its own, so that the measure is this
    mix's own and not what earlier tests left in the allocator's heaps (after the 5 MB requests
    of test_huge_requests, glibc keeps tens of MiB of freed memory and hands part of it back
    in one step later on: a one-time jump of ~10 MiB that a longer soak shows to be flat)."""
    run_isolated(world, "soak")


def soak(world) -> None:
    import uv_ffi

    rng = random.Random(20240601)
    seeded = world["seeded"].python
    # Earlier fuzzing may have patched views at random: start from a fresh scan, and check.
    call("view_invalidate", json.dumps({"python": seeded}).encode())
    view_request = json.dumps({"python": seeded, "check": True}).encode()
    noop_request = json.dumps({"command": world["noop"]}).encode()
    vocabulary = ["pip", "install", "uninstall", "alpha", "beta==2", "--python", "-U", "cache", "clean",
                  "venv", "list", "--frobnicate", "x" * 40, "é", "'", "--dry-run", "-r", "run", "tool"]
    invalid = [b"{not json", b"", b"[", b'{"command": 5}', b"\xff\xfe", b'{"python": []}']

    dry_run = json.dumps({"argv": world["prefix"] + ["no-such-package"], "cwd": world["cwd"]}).encode()
    buffer = ffi.new("char[]", 512)
    noop = world["noop"].encode()

    def one_call(i: int) -> None:
        choice = i % 10
        if choice in (0, 1):
            reply = call("view_get", view_request, direct=True)
            assert reply["ok"] and reply["value"]["packages"] == [["alpha", "1.0"]], reply
        elif choice in (2, 3):
            words = [rng.choice(vocabulary) for _ in range(rng.randint(0, 6))]
            call("parse", json.dumps({"argv": words}).encode(), direct=True)
        elif choice in (4, 5):
            reply = call("run", noop_request, direct=True)
            assert reply["ok"] and reply["value"]["satisfied"], reply
        elif choice == 6:
            assert lib.omnipkg_uv_run_c(noop, buffer, 512) == 0
        elif choice == 7 and i % 20 == 7:
            # A resolution that fails (dry run, no index): the resolver's error paths.
            reply = call("run", dry_run, direct=True)
            assert not reply["ok"] and reply["error"]["kind"] == "resolution", reply
        else:
            reply = call(rng.choice(["run", "view_get", "parse", "view_patch"]), rng.choice(invalid), direct=True)
            assert not reply["ok"]

    # The calls run on this thread, as a host's would (a helper thread per call would add the
    # allocator's per-thread caches to the measure); a hang ends the run with every stack.
    faulthandler.dump_traceback_later(300, exit=True)
    try:
        for i in range(1_000):
            one_call(i)
        before = rss_bytes()
        for i in range(10_000):
            one_call(i)
        after = rss_bytes()
    finally:
        faulthandler.cancel_dump_traceback_later()
    growth = [(a - b) / 2 ** 20 for a, b in zip(after, before)]
    assert growth[1] < 8, "RSS grew by %.1f MiB (anonymous: %.1f MiB)" % tuple(growth)
    assert uv_ffi.get_site_packages_cache(python=seeded) == [("alpha", "1.0")]
    untouched(world)
