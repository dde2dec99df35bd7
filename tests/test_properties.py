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
    assert reply["parsed"]["packages"] == packages


@settings(max_examples=200, deadline=None)
@given(st.lists(words, max_size=4), st.sampled_from(["", "-q ", "--no-deps ", "-U "]))
def test_options_are_recognised_wherever_they_appear(packages, flag):
    line = "pip install %s--python /x/bin/python -- %s" % (flag, " ".join(shlex.quote(w) for w in ["a", *packages]))
    parsed = uv_ffi.parse_command(line)["parsed"]
    assert parsed["python"] == "/x/bin/python"
    assert parsed["no_deps"] == (flag == "--no-deps ")
    assert parsed["upgrade"] == (flag == "-U ")
    assert parsed["quiet"] == (1 if flag == "-q " else 0)


@settings(max_examples=200, deadline=None)
@given(words.filter(lambda w: w.strip() != ""))
def test_error_text_round_trips_through_json(word):
    # An unknown flag is echoed back inside uv-ffi's message, through both JSON encoders.
    flag = "--x" + word
    try:
        uv_ffi.parse_command("pip install %s a" % shlex.quote(flag))
    except errors.InvalidRequest as exc:
        assert flag.split("=", 1)[0] in exc.message
    else:
        raise AssertionError("an unknown flag was accepted")


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
