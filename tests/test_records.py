"""The result records (uv_ffi._records): frozen-dataclass behaviour without importing
dataclasses, which would cost a new interpreter about 8 ms of ``import uv_ffi``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import uv_ffi
from uv_ffi import CheckResult, Package, ProgressEvent, RunResult
from uv_ffi.commands import ShowRecord


def run_result(**changes):
    fields = dict(installed=(("a", "1"),), removed=(), environment="/env", target=None,
                  satisfied=False, dry_run=False, timings_us=(("parse", 3),))
    fields.update(changes)
    return RunResult(**fields)


def test_import_does_not_load_dataclasses():
    code = "import sys, uv_ffi; print(sorted(m for m in ('dataclasses', 'inspect') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_defaults_equality_hash_and_repr():
    result = run_result()
    assert result.engine == "warm" and result.exit_code == 0 and result.read is None
    assert result == run_result() and result != run_result(satisfied=True)
    assert hash(result) == hash(run_result())
    assert repr(Package("a", "1")) == (
        "Package(name='a', version='1', editable_project_location=None, location=None, "
        "kind=None, editable=False, url=None, installer=None)")
    assert Package("a", "1") != ("a", "1")


def test_records_are_immutable():
    result = run_result()
    with pytest.raises(AttributeError):
        result.exit_code = 1
    with pytest.raises(AttributeError):
        del result.engine
    assert result.exit_code == 0


def test_mutable_defaults_are_fresh_per_record():
    first, second = CheckResult(True), CheckResult(True)
    assert first.problems == [] and first.problems is not second.problems
    show = ShowRecord("a", "1", "/site")
    assert (show.requires, show.required_by, show.fields, show.files) == ([], [], {}, None)


def test_positional_keyword_and_wrong_arguments():
    assert Package("a", "1", None, "/site") == Package(name="a", version="1", location="/site")
    with pytest.raises(TypeError, match="missing argument 'version'"):
        Package("a")
    with pytest.raises(TypeError, match="two values"):
        Package("a", "1", name="b")
    with pytest.raises(TypeError, match="unexpected"):
        ProgressEvent("phase", colour="red")


def test_match_by_position():
    match ProgressEvent("phase", "resolve", 3):
        case ProgressEvent(event, phase, total):
            assert (event, phase, total) == ("phase", "resolve", 3)
        case _:
            pytest.fail("no match")


def test_a_real_result_is_a_record(tmp_path):
    result = uv_ffi.install(["pip", "--help"])
    assert isinstance(result, RunResult) and result.engine == "printed"
    with pytest.raises(AttributeError):
        result.stdout = ""


def test_a_reply_becomes_the_record_init_would_build():
    # from_json fills the record in one step (_make, no __init__): every field, nothing more.
    value = uv_ffi._run_value(["pip", "--help"], None, None)
    made = RunResult.from_json(value)
    assert set(vars(made)) == set(RunResult._fields)
    rebuilt = RunResult(**{name: getattr(made, name) for name in RunResult._fields})
    assert made == rebuilt and hash(made) == hash(rebuilt) and repr(made) == repr(rebuilt)
    assert made.engine == "printed" and made.stdout == value["stdout"]
    with pytest.raises(AttributeError):
        made.engine = "warm"
