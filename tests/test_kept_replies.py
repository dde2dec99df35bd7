"""Replies and requests kept between calls: a host repeats a few calls, and the facade keeps
the decoded replies by their text up to the timings (``uv_ffi._REPLIES``), and the library the
requests it read (``rust/src/parsed.rs``). What a kept reply gives must be what decoding it
gives, with each call's own timings, and what is on disk must be what the results say."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import uv_ffi
from uv_ffi import RunResult, _native


def command(venv, index, spec: str) -> str:
    return "pip install --python %s -i %s %s" % (venv.python, index.url, spec)


def fresh_result(text: bytes) -> RunResult:
    """The result as decoding the whole reply builds it, without the kept replies."""
    return RunResult._make(RunResult._fields_of(_native.value_of(text)))


def test_the_library_writes_the_timings_last(venv, index):
    uv_ffi.install(command(venv, index, "alpha==1.0"))
    request = uv_ffi._request(command(venv, index, "alpha==1.0"), True, None, False, False)
    text = _native.call_text("run", request)
    value = json.loads(text)["value"]
    assert list(value)[-1] == "timings_us", list(value)
    assert text.endswith(b"]}}")
    assert text.rfind(uv_ffi._TIMINGS) > 0


def test_a_kept_reply_gives_what_decoding_it_gives_with_the_calls_own_timings(monkeypatch):
    uv_ffi._REPLIES.clear()
    head = (b'{"ok":true,"value":{"exit_code":0,"installed":[["alpha","1.1"]],"removed":[["alpha","1.0"]],'
            b'"error":"","environment":"/e","target":null,"satisfied":false,"dry_run":false,"engine":"warm",'
            b'"stdout":"","stderr":"","index_retried":false,"plan":null,"plan_id":null,"progress":null')
    replies = [head + b',"timings_us":[["parse",%d],["renames",%d]]}}' % (i, 10 * i) for i in (1, 2, 3)]
    sent = iter(replies)
    monkeypatch.setattr(_native, "run_text", lambda request: next(sent))
    results = [RunResult.from_json(uv_ffi._call_run(b"{}")) for _ in replies]
    assert len(uv_ffi._REPLIES) == 1
    for text, result in zip(replies, results):
        expected = fresh_result(text)
        assert result == expected and hash(result) == hash(expected) and repr(result) == repr(expected)
        assert result.timings_us == expected.timings_us
    assert [r.timings_us for r in results] == [(("parse", i), ("renames", 10 * i)) for i in (1, 2, 3)]
    with pytest.raises(AttributeError):
        results[1].timings_us = ()


def test_replies_with_a_plan_or_an_error_are_not_kept(monkeypatch):
    uv_ffi._REPLIES.clear()
    planned = (b'{"ok":true,"value":{"exit_code":0,"installed":[],"removed":[],"error":"","environment":"/e",'
               b'"target":null,"satisfied":true,"dry_run":false,"engine":"warm","stdout":"","stderr":"",'
               b'"index_retried":false,"plan":[],"plan_id":null,"progress":null,"timings_us":[]}}')
    failed = b'{"ok":false,"error":{"kind":"resolution","message":"no","hints":[],"exit_code":1}}'
    sent = iter([planned, failed])
    monkeypatch.setattr(_native, "run_text", lambda request: next(sent))
    assert uv_ffi._call_run(b"{}")["plan"] == []
    with pytest.raises(uv_ffi.ResolutionError):
        uv_ffi._call_run(b"{}")
    assert uv_ffi._REPLIES == {}


def test_swaps_answered_from_kept_replies_say_what_is_on_disk(venv, index):
    # Each request and each reply is met again from the third call on.
    for round_ in range(3):
        for version, other in (("1.0", "1.1"), ("1.1", "1.0")):
            result = uv_ffi.install(command(venv, index, "alpha==%s" % version))
            if round_:
                assert result.installed == (("alpha", version),)
                assert result.removed == (("alpha", other),)
            assert venv.metadata_version("alpha") == version
            assert venv.has("alpha", version) and not venv.has("alpha", other)
            same = uv_ffi.install(command(venv, index, "alpha==%s" % version))
            assert same.satisfied and same.installed == () and same.removed == ()
            assert dict(same.timings_us)
    assert uv_ffi.run(command(venv, index, "alpha==1.0")) == (0, [("alpha", "1.0")], [("alpha", "1.1")], "")
    assert venv.metadata_version("alpha") == "1.0"


def test_an_invalid_request_sent_again_is_refused_again():
    bad = b'{"command": "pip install alpha", "colour": "red"}'
    for _ in range(2):
        reply = json.loads(_native.call_text("run", bad))
        assert not reply["ok"] and reply["error"]["kind"] == "invalid_json"
        assert "unknown field `colour`" in reply["error"]["message"]


def satisfied_line(venv, index) -> str:
    """A command line installed, then found satisfied twice: the first satisfied reply is
    decoded, the next, met again, is kept for the line."""
    line = command(venv, index, "alpha==1.0")
    uv_ffi._SATISFIED.clear()
    for _ in range(3):
        uv_ffi.install(line)
    assert line in uv_ffi._SATISFIED
    return line


def removed_by_another_tool(venv, name: str) -> None:
    for entry in os.listdir(venv.site_packages):
        if entry.startswith(name):
            shutil.rmtree(os.path.join(venv.site_packages, entry))
    assert venv.metadata_version(name) is None


def test_a_satisfied_line_is_answered_from_what_it_found_before(venv, index):
    line = satisfied_line(venv, index)
    seen = uv_ffi._SATISFIED[line]
    text = _native.call_text("run", seen.request)
    assert text.startswith(seen.head)
    result = uv_ffi.install(line)
    expected = fresh_result(text)
    assert result.satisfied and result.installed == () and result.removed == ()
    assert result.environment == expected.environment == venv.root
    assert [name for name, _ in result.timings_us] == [name for name, _ in expected.timings_us]
    assert result._fields == expected._fields
    assert all(getattr(result, f) == getattr(expected, f) for f in result._fields if f != "timings_us")
    assert uv_ffi.run(line) == (0, [], [], "")
    assert venv.metadata_version("alpha") == "1.0"


def test_a_line_satisfied_before_sees_what_changed_since(venv, index):
    line = satisfied_line(venv, index)
    # Another tool removes the distribution: the kept answer no longer fits the reply.
    removed_by_another_tool(venv, "alpha")
    result = uv_ffi.install(line)
    assert result.installed == (("alpha", "1.0"),) and not result.satisfied
    assert venv.metadata_version("alpha") == "1.0"
    removed_by_another_tool(venv, "alpha")
    assert uv_ffi.run(line) == (0, [("alpha", "1.0")], [], "")
    assert venv.metadata_version("alpha") == "1.0"


def test_a_policy_change_is_not_answered_from_a_line_satisfied_before(venv, index):
    line = satisfied_line(venv, index)
    sent = []
    real, before = _native.run_text, uv_ffi.get_policy()
    try:
        _native.run_text = lambda request: sent.append(request) or real(request)
        uv_ffi.set_policy("trust")
        assert uv_ffi.install(line).satisfied
    finally:
        _native.run_text = real
        uv_ffi.set_policy(before)
    assert b'"check":false' in sent[-1]
    assert uv_ffi._SATISFIED[line].mode == "trust"
