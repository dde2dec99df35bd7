"""Property tests: the command tokenizer follows shell quoting, and text survives the JSON boundary."""

from __future__ import annotations

import re
import shlex

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

import uv_ffi
from uv_ffi import _native, errors

# Any Unicode text except NUL (which a C string cannot hold) and surrogates (not UTF-8).
words = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(words, min_size=1, max_size=6))
def test_tokenizer_inverts_shell_quoting(packages):
    line = "pip install -- " + " ".join(shlex.quote(w) for w in packages)
    reply = uv_ffi.parse_command(line)
    assert reply["argv"] == ["pip", "install", "--", *packages]
    # uv's parser takes every word after `--` as a package, empty ones included.
    assert reply["route"] in ("warm", "uv", "error")
    if reply["route"] == "warm":
        assert reply["warm"]["packages"] == [p for p in packages if p]


# The fast parser's options, each with values uv accepts and some it refuses, plus options the
# fast parser does not know (so that mixing them in must send the command to uv's parser).
PATHS = st.sampled_from(["/x/bin/python", "rel/dir", "req.txt", "/tmp/c d"])
OPTION_VALUES = {
    "--python": PATHS, "-p": PATHS, "--target": PATHS, "-r": PATHS, "--requirements": PATHS,
    "-c": PATHS, "--constraints": PATHS, "--cache-dir": PATHS,
    "--link-mode": st.sampled_from(["clone", "copy", "hardlink", "symlink", "reflink", "fast", ""]),
    "-i": st.sampled_from(["http://127.0.0.1:1/simple/", "/local/dir", ""]),
    "--index-url": st.sampled_from(["http://127.0.0.1:1/simple/", "not a url"]),
    "--extra-index-url": st.sampled_from(["http://127.0.0.1:2/simple/"]),
    "-f": PATHS, "--find-links": PATHS,
    "--prerelease": st.sampled_from(["allow", "disallow", "if-necessary", "explicit", "if-necessary-or-explicit", "sometimes"]),
    "--only-binary": st.sampled_from([":all:", ":none:", "alpha", "alpha,beta", "Bad Name"]),
    "--no-binary": st.sampled_from([":all:", ":none:", "alpha"]),
    "--exclude-newer": st.sampled_from(["2024-01-01"]),
    "--resolution": st.sampled_from(["lowest", "highest", "best"]),
}
FLAGS = ["--system", "--break-system-packages", "--dry-run", "--no-config", "-q", "--quiet", "-qq",
         "-v", "--verbose", "-qv", "--no-index", "--reinstall", "--upgrade", "-U", "--no-deps", "--pre",
         "--no-build", "--force-reinstall", "-y", "--strict", "--frobnicate", "-", "--"]


@st.composite
def option_words(draw):
    if draw(st.booleans()):
        return [draw(st.sampled_from(FLAGS))]
    name = draw(st.sampled_from(sorted(OPTION_VALUES)))
    value = draw(OPTION_VALUES[name])
    form = draw(st.sampled_from(["separate", "equals", "attached"]))
    if form == "equals":
        return [name + "=" + value]
    if form == "attached" and len(name) == 2:
        return [name + value]
    return [name, value]


@st.composite
def command_lines(draw):
    words = [draw(st.sampled_from(["pip", "uv pip"]))]
    words = words[0].split() + [draw(st.sampled_from(["install", "install", "uninstall"]))]
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            words += draw(option_words())
        else:
            words.append(draw(st.sampled_from(["alpha", "alpha==1.0", "beta>=1,<3", "gamma[fancy]"])))
    return words


@settings(max_examples=1500, deadline=None)
@given(command_lines())
def test_the_fast_parser_agrees_with_uvs_parser_wherever_it_answers(argv):
    # No configuration file applies here and only variables the warm path reads are set, so a
    # command the fast parser takes must be one uv's parser routes to the warm engine, with the
    # very same arguments.
    reply = uv_ffi.parse_command(argv)
    if reply["fast"] is not None:
        assert reply["route"] == "warm", (reply["error"], reply["explicit"])
        assert reply["warm"] == reply["fast"]


# The read parser's options (pip list / freeze / show), with values uv accepts and some it
# refuses, plus words it does not take.
READ_OPTION_VALUES = {
    "--python": PATHS, "-p": PATHS, "--target": PATHS, "-t": PATHS, "--cache-dir": PATHS, "--prefix": PATHS,
    "--format": st.sampled_from(["columns", "freeze", "json", "yaml", ""]),
    "--exclude": st.sampled_from(["alpha", "Beta_Two", "bad name", ""]),
}
READ_FLAGS = ["--system", "--no-system", "--no-config", "-q", "--quiet", "-qq", "-v", "--strict", "--no-strict",
              "--editable", "-e", "--exclude-editable", "--files", "-f", "--outdated", "--frobnicate", "--"]


@st.composite
def read_lines(draw):
    words = draw(st.sampled_from(["pip", "uv pip"])).split() + [draw(st.sampled_from(["list", "freeze", "show"]))]
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            words.append(draw(st.sampled_from(READ_FLAGS)))
        elif kind == 1:
            name = draw(st.sampled_from(sorted(READ_OPTION_VALUES)))
            value = draw(READ_OPTION_VALUES[name])
            words += [name + "=" + value] if draw(st.booleans()) else [name, value]
        else:
            words.append(draw(st.sampled_from(["alpha", "Mixed_Case.Name", "no such", "beta"])))
    return words


@settings(max_examples=1000, deadline=None)
@given(read_lines())
def test_the_fast_read_parser_agrees_with_uvs_parser_wherever_it_answers(argv):
    # As for installs: a read the fast parser takes must be one uv's parser routes to the engine's
    # snapshot, understood the same way (the command, its options, the environment's).
    reply = uv_ffi.parse_command(argv)
    if reply["fast_read"] is not None:
        assert reply["route"] == "read", (reply["error"], reply["explicit"])
        assert reply["read"] == reply["fast_read"]


def test_common_reads_take_the_fast_parser():
    for line in ["pip list --python /x/bin/python", "pip list --format json", "pip freeze --exclude alpha",
                 "uv pip show alpha --files --target /t", "pip list -q --cache-dir /c --no-config"]:
        reply = uv_ffi.parse_command(line)
        assert reply["fast_read"] is not None and reply["fast_read"] == reply["read"], line


printable = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(printable.filter(lambda w: w.strip() != ""))
def test_error_text_round_trips_through_json(word):
    # An unknown flag is echoed back inside uv's message, through both JSON encoders (control
    # characters are dropped by uv's terminal writer, as uv itself prints them).
    flag = "--x" + word
    reply = uv_ffi.parse_command(["pip", "install", flag, "a"])
    assert reply["route"] == "error"
    assert flag.split("=", 1)[0] in reply["error"]


@pytest.fixture(scope="session")
def patch_venv(tmp_path_factory):
    from conftest import Venv

    return Venv(str(tmp_path_factory.mktemp("patch") / "venv"))


def _normal_name(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _normal_version(version):
    return ".".join(str(int(part)) for part in version.split("."))


names = st.from_regex(r"[A-Za-z][A-Za-z0-9._-]{0,10}[A-Za-z0-9]", fullmatch=True)
versions = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(names, versions), max_size=5))
def test_patched_view_round_trips_normalised(patch_venv, pairs):
    python = patch_venv.python
    uv_ffi.invalidate_site_packages_cache(python=python)
    assert uv_ffi.get_site_packages_cache(python=python) == []
    assert uv_ffi.patch_site_packages_cache(pairs, [], python=python)
    expected = {}
    for name, version in pairs:
        expected[_normal_name(name)] = _normal_version(version)
    # Read without a disk check: the view holds exactly what was patched, normalised.
    value = _native.call("view_get", {"python": python, "check": False})
    assert value["packages"] == sorted([n, v] for n, v in expected.items())
    uv_ffi.invalidate_site_packages_cache(python=python)
    assert uv_ffi.get_site_packages_cache(python=python) == []
