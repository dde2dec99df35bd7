"""Bad input: a clear message, a non-zero exit code, an untouched environment, and silence."""

from __future__ import annotations

import os

import pytest

import uv_ffi
from uv_ffi import _native, errors


@pytest.fixture
def seeded(venv, index):
    """An environment with alpha 1.0 installed, and its site-packages listing."""
    assert uv_ffi.run("pip install --python %s -i %s alpha==1.0" % (venv.python, index.url))[0] == 0
    return venv, venv.listing()


def closed_port_url() -> str:
    from conftest import free_port

    return "http://127.0.0.1:%d/simple/" % free_port()


BAD_COMMANDS = {
    "malformed requirement": ("{base} 'alpha=='", 2, "Failed to parse"),
    "unknown flag": ("{base} --frobnicate alpha", 2, "--frobnicate"),
    "command that must not run in a host": ("run --python {python} python -V", 2, "cannot run inside a host process"),
    "missing package": ("{base}", 2, "the following required arguments were not provided"),
    "package that does not exist": ("{base} no-such-package", 1, "not found in the package registry"),
    "unsatisfiable version": ("{base} alpha==9.9", 1, "No solution found when resolving dependencies"),
    "conflicting requirements": ("{base} beta==2.0 alpha==1.0", 1, "No solution found"),
    "index that is down": ("pip install --python {python} -i {down} alpha==2.0", 2, "127.0.0.1"),
    "python that does not exist": ("pip install --python /no/such/python -i {url} alpha", 1, "/no/such/python"),
    "python that is not a python": ("pip install --python {not_python} -i {url} alpha", 1, "not_python"),
    "empty command": ("", 2, "Usage: uv"),
    "unterminated quote": ("{base} 'alpha", 2, "Unterminated"),
    "requirements file that does not exist": ("{base} -r /no/such/requirements.txt", 2, "requirements.txt"),
}


@pytest.mark.parametrize("case", sorted(BAD_COMMANDS))
def test_bad_input_is_refused_and_changes_nothing(case, seeded, index, tmp_path, capfd):
    venv, before = seeded
    not_python = tmp_path / "not_python"
    not_python.write_text("this is not an interpreter\n")
    not_python.chmod(0o755)
    template, expected_code, expected_text = BAD_COMMANDS[case]
    command = template.format(
        base="pip install --python %s -i %s" % (venv.python, index.url),
        python=venv.python,
        url=index.url,
        down=closed_port_url(),
        not_python=not_python,
    )
    capfd.readouterr()
    code, installed, removed, error = uv_ffi.run(command)
    assert code == expected_code, error
    assert (installed, removed) == ([], [])
    assert expected_text in error
    # uv's own words, never a Rust backtrace (RUST_BACKTRACE may well be set).
    assert "stack backtrace" not in error and ".rs:" not in error and "panicked" not in error
    assert venv.listing() == before
    assert venv.metadata_version("alpha") == "1.0"
    out, err = capfd.readouterr()
    assert (out, err) == ("", ""), "the engine printed to the terminal"


def test_typed_api_raises_mapped_exceptions(seeded, index):
    venv, _ = seeded
    base = "pip install --python %s -i %s " % (venv.python, index.url)
    with pytest.raises(errors.ResolutionError) as info:
        uv_ffi.install(base + "alpha==9.9")
    assert info.value.exit_code == 1 and "alpha==9.9" in info.value.message
    with pytest.raises(errors.InvalidRequest):
        uv_ffi.install(base + "--frobnicate alpha")
    with pytest.raises(ValueError):  # InvalidRequest is also a ValueError
        uv_ffi.install(base + "'alpha=='")
    with pytest.raises(errors.PythonNotFound):
        uv_ffi.install("pip install --python /no/such/python alpha")


def test_a_panic_is_caught_and_the_engine_keeps_working(seeded, index, capfd):
    venv, _ = seeded
    capfd.readouterr()
    with pytest.raises(errors.EnginePanic) as info:
        _native.call("debug_panic", {})
    assert "requested by uv_ffi_debug_panic" in info.value.message
    assert capfd.readouterr() == ("", "")
    code, installed, removed, _ = uv_ffi.run(
        "pip install --python %s -i %s alpha==1.1" % (venv.python, index.url)
    )
    assert (code, installed, removed) == (0, [("alpha", "1.1")], [("alpha", "1.0")])


def test_malformed_requests_at_the_boundary():
    lib, ffi = _native.lib, _native.ffi
    for raw in (b"not json", b'{"command": 5}', b'{"command": "x", "surprise": true}', b"\xff\xfe"):
        pointer = lib.uv_ffi_run(raw)
        try:
            text = ffi.string(pointer).decode()
        finally:
            lib.uv_ffi_string_free(pointer)
        assert '"ok":false' in text and '"kind":"invalid_json"' in text
    pointer = lib.uv_ffi_run(ffi.NULL)
    assert b'"kind":"invalid_json"' in ffi.string(pointer)
    lib.uv_ffi_string_free(pointer)
    lib.uv_ffi_string_free(ffi.NULL)


def test_verbose_flag_prints_only_when_asked(venv, index, capfd):
    capfd.readouterr()
    uv_ffi.run("pip install --python %s -i %s alpha==1.0" % (venv.python, index.url))
    assert capfd.readouterr() == ("", "")
    uv_ffi.run("pip install -v --python %s -i %s alpha==1.1" % (venv.python, index.url))
    err = capfd.readouterr().err
    assert " - alpha==1.0" in err and " + alpha==1.1" in err
    assert os.path.isdir(os.path.join(venv.site_packages, "alpha-1.1.dist-info"))


def test_a_forked_child_starts_a_fresh_engine_of_its_own(venv, index):
    base = "pip install --python %s -i %s " % (venv.python, index.url)
    uv_ffi.run(base + "alpha==1.0")  # the engine is running in this process
    pid = os.fork()
    if pid == 0:  # the child: the parent's engine thread does not exist here
        code = 3
        try:
            code = 0 if uv_ffi.install(base + "alpha==1.1").installed == (("alpha", "1.1"),) else 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert venv.metadata_version("alpha") == "1.1"
