"""The C ABI itself: header and library agree, and the upstream C entry point keeps its contract."""

from __future__ import annotations

import json
import os
import re

import uv_ffi
from uv_ffi import _native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.path.join(ROOT, "rust", "include", "uv_ffi.h")
ABI_SOURCE = os.path.join(ROOT, "rust", "src", "abi.rs")


def header_functions():
    text = open(HEADER, encoding="utf-8").read()
    return set(re.findall(r"^\w[\w\s\*]*?\b(\w+)\(", text, flags=re.MULTILINE))


def exported_functions():
    text = open(ABI_SOURCE, encoding="utf-8").read()
    return set(re.findall(r'pub unsafe extern "C" fn (\w+)\(', text))


def test_header_declares_exactly_what_the_library_exports():
    assert header_functions() == exported_functions()
    for name in header_functions():
        assert getattr(_native.lib, name) is not None


def test_info_reports_versions():
    info = _native.call("info", {})
    assert info == {"abi_version": _native.ABI_VERSION, "version": "0.12.5", "uv_version": "0.12.5"}
    assert uv_ffi.__version__ == "0.12.5"


def _run_c(command: str, size: int):
    ffi, lib = _native.ffi, _native.lib
    buffer = ffi.new("char[]", size + 16)
    # A sentinel after the allowed size shows whether anything was written past it.
    for i in range(size, size + 16):
        buffer[i] = b"Z"
    code = lib.omnipkg_uv_run_c(command.encode(), buffer, size)
    tail = bytes(ffi.buffer(buffer, size + 16))[size:]
    return code, ffi.string(buffer, size).decode(), tail


def test_omnipkg_uv_run_c_writes_the_changelog(venv, index):
    base = "pip install --python %s -i %s " % (venv.python, index.url)
    code, text, tail = _run_c(base + "alpha==1.0", 256)
    assert code == 0 and tail == b"Z" * 16
    assert json.loads(text) == {"installed": [["alpha", "1.0"]], "removed": [], "error": ""}
    code, text, _ = _run_c(base + "alpha==1.1", 256)
    assert json.loads(text) == {"installed": [["alpha", "1.1"]], "removed": [["alpha", "1.0"]], "error": ""}
    assert venv.metadata_version("alpha") == "1.1"
    code, text, _ = _run_c(base + "alpha==9.9", 4096)
    assert code == 1 and "No solution found" in json.loads(text)["error"]


def test_omnipkg_uv_run_c_never_overruns_a_small_buffer(venv, index):
    base = "pip install --python %s -i %s " % (venv.python, index.url)
    code, text, tail = _run_c(base + "beta==2.0", 64)
    assert code == -2 and tail == b"Z" * 16
    reply = json.loads(text)
    assert reply["error"] == "buffer_too_small" and reply["needed"] > 64
    # The command did run: the environment and the engine's view agree.
    assert venv.metadata_version("beta") == "2.0"
    assert uv_ffi.get_site_packages_cache(python=venv.python) == [("alpha", "2.0"), ("beta", "2.0")]
    # Too small to even hold that reply: refused before running.
    code, _, tail = _run_c(base + "alpha==1.0", 8)
    assert code == -1 and tail == b"Z" * 16
    assert venv.metadata_version("alpha") == "2.0"
    assert _native.lib.omnipkg_uv_run_c(_native.ffi.NULL, _native.ffi.NULL, 100) == -1
