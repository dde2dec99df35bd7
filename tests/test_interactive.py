"""For people at a prompt: progress events, swaps a running interpreter can trust, and the
``%uv`` magic in an IPython shell. Everything offline, against the local index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from typing import List

import pytest

import diffkit
import uv_ffi
from uv_ffi import ProgressEvent


@pytest.fixture
def sdist_links(tmp_path) -> str:
    """A find-links folder with an sdist (``handmade 0.1``, built by tinybackend) and the backend."""
    folder = str(tmp_path / "links")
    diffkit.tinybackend_wheel(folder)
    project = diffkit.write_project(str(tmp_path / "handmade"), "handmade", "0.1")
    diffkit.build_sdist(project, folder)
    return folder


def events_of(kind: str, events: List[ProgressEvent]) -> List[ProgressEvent]:
    return [e for e in events if e.event == kind]


def test_progress_events_arrive_in_order_and_complete(venv, index, sdist_links, tmp_path):
    events: List[ProgressEvent] = []
    result = uv_ffi.install(
        ["pip", "install", "--python", venv.python, "-i", index.url, "-f", sdist_links,
         "--cache-dir", str(tmp_path / "cache"), "handmade==0.1", "beta==1.0"],
        progress=events.append,
    )
    assert result.installed == (("alpha", "2.0"), ("beta", "1.0"), ("handmade", "0.1"))
    assert venv.installed() == {"alpha": "2.0", "beta": "1.0", "handmade": "0.1"}

    phases = [(e.phase, e.total) for e in events_of("phase", events)]
    assert [p for p, _ in phases] == ["resolve", "prepare", "install"]
    assert phases[1][1] == phases[2][1] == 3
    # Each phase's events come after it starts and before the next one does.
    starts = [i for i, e in enumerate(events) if e.event == "phase"]
    resolved = {(e.name, e.version) for e in events[starts[0]:starts[1]] if e.event == "resolved"}
    assert resolved >= {("alpha", "2.0"), ("beta", "1.0"), ("handmade", "0.1")}
    assert {(e.name, e.version) for e in events[starts[2]:] if e.event == "installed"} == set(result.installed)
    assert {(e.name, e.version) for e in events_of("prepared", events)} == set(result.installed)
    # The sdist is built once, start then finish.
    builds = [(e.event, e.name) for e in events if e.event.startswith("build_")]
    assert builds == [("build_start", "handmade"), ("build_done", "handmade")]
    # Every download that starts finishes, with its bytes counted up to the size it announced.
    for start in events_of("download_start", events):
        done = [e for e in events if e.event == "download_done" and e.id == start.id]
        counted = [e.bytes for e in events if e.event == "download_progress" and e.id == start.id]
        assert len(done) == 1 and counted == sorted(counted)
        if start.total_bytes and counted:
            assert counted[-1] == start.total_bytes
    assert {e.name for e in events_of("download_start", events)} >= {"alpha", "beta"}


def test_uninstall_reports_each_removal(venv, index):
    uv_ffi.install(["pip", "install", "--python", venv.python, "-i", index.url, "beta==1.0"])
    events: List[ProgressEvent] = []
    uv_ffi.install(["pip", "uninstall", "--python", venv.python, "alpha", "beta"], progress=events.append)
    assert [(e.event, e.name) for e in events] == [
        ("phase", None), ("uninstalled", "alpha"), ("uninstalled", "beta")]
    assert venv.installed() == {}


def test_a_progress_callback_that_raises_stops_the_call_cleanly(venv, index, tmp_path):
    uv_ffi.install(["pip", "install", "--python", venv.python, "-i", index.url, "alpha==1.0"])

    def fails(event):
        raise RuntimeError("display broke")

    with pytest.raises(uv_ffi.ProgressCallbackError) as raised:
        uv_ffi.install(["pip", "install", "--python", venv.python, "-i", index.url,
                        "--cache-dir", str(tmp_path / "cache"), "alpha==1.1"], progress=fails)
    assert isinstance(raised.value.__cause__, RuntimeError)
    # Stopped before anything changed, or finished: either way the disk and the view agree.
    on_disk = venv.installed()
    assert on_disk in ({"alpha": "1.0"}, {"alpha": "1.1"})
    if raised.value.result is None:
        assert on_disk == {"alpha": "1.0"}
    assert uv_ffi.get_site_packages_cache(venv.python) == sorted(on_disk.items())
    # The engine is fine, and no recording call is left behind.
    assert uv_ffi.install(["pip", "install", "--python", venv.python, "-i", index.url, "alpha==1.1"]).exit_code == 0
    assert venv.installed() == {"alpha": "1.1"}
    assert uv_ffi._native.call("progress", {})["running"] is False


def test_a_stop_during_a_build_changes_nothing(venv, index, sdist_links, tmp_path):
    # Building an sdist takes far longer than one poll interval: the callback sees the first
    # event while the call resolves or builds, and the engine stops before it changes anything.
    seen: List[ProgressEvent] = []

    def stop_at_once(event):
        seen.append(event)
        raise KeyError("stop")

    with pytest.raises(uv_ffi.ProgressCallbackError, match="stopped before changing anything"):
        uv_ffi.install(["pip", "install", "--python", venv.python, "-i", index.url, "-f", sdist_links,
                        "--cache-dir", str(tmp_path / "cache"), "handmade==0.1"], progress=stop_at_once)
    assert len(seen) == 1 and seen[0].event == "phase"
    assert venv.installed() == {}
    assert uv_ffi.get_site_packages_cache(venv.python) == []


def test_no_progress_asked_records_nothing(venv, index):
    result = uv_ffi.install(["pip", "install", "--python", venv.python, "-i", index.url, "alpha==1.0"])
    assert result.exit_code == 0
    value = uv_ffi._native.call("run", {"argv": ["pip", "install", "--python", venv.python,
                                                 "-i", index.url, "alpha==1.1"]})
    assert value["progress"] is None


def test_stale_modules_after_a_swap_in_this_process(venv, index, tmp_path, monkeypatch):
    folder = str(tmp_path / "on-path")
    words = ["pip", "install", "--python", venv.python, "-i", index.url, "--target", folder]
    uv_ffi.install(words + ["alpha==1.0"])
    monkeypatch.syspath_prepend(folder)
    monkeypatch.delitem(sys.modules, "alpha", raising=False)
    import alpha  # noqa: F401  (imported at 1.0, as a host would have)

    with pytest.warns(uv_ffi.StaleModulesWarning, match="alpha"):
        result = uv_ffi.install(words + ["alpha==1.1"])
    assert result.stale_modules == ("alpha",)
    # An unrelated install names nothing, and -q silences the warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert uv_ffi.install(words + ["zeta==1.0"]).stale_modules == ()
        assert uv_ffi.install(words + ["-q", "alpha==1.0"]).stale_modules == ("alpha",)
    # The import system sees the new files at once (its caches were invalidated).
    import importlib.metadata
    assert importlib.metadata.version("zeta") == "1.0"
    sys.modules.pop("alpha", None)


def test_an_install_elsewhere_names_no_stale_modules(venv, index):
    import json as imported_here  # noqa: F401  (a module this process has)
    result = uv_ffi.install(["pip", "install", "--python", venv.python, "-i", index.url, "alpha==1.0"])
    assert result.stale_modules == ()



def test_an_environment_found_elsewhere_is_not_looked_at_again(tmp_path, monkeypatch):
    from uv_ffi import stale
    looked_at = []
    real = stale._identity
    monkeypatch.setattr(stale, "_identity", lambda path: looked_at.append(path) or real(path))
    monkeypatch.setattr(stale, "_elsewhere", set())
    other = str(tmp_path)
    assert not stale._runs_here(other, None) and not stale._runs_here(other, None)
    assert looked_at.count(other) == 1
    # This process's own environment is still looked at, and found, every time.
    assert stale._runs_here(sys.prefix, None) and stale._runs_here(sys.prefix, None)
    assert looked_at.count(sys.prefix) >= 2 and sys.prefix not in stale._elsewhere

MAGIC_SESSION = textwrap.dedent('''
    import json, sys
    from IPython.testing.globalipapp import start_ipython
    ip = start_ipython()
    ip.run_line_magic("load_ext", "uv_ffi")
    ip.run_line_magic("uv", "pip install -i {url} alpha==1.0")
    ip.run_cell_magic("uv", "pip install -i {url}", "beta==1.0\\nzeta==1.0\\n")
    ip.run_line_magic("uv", "pip install -i {url} no-such-package-anywhere")
    print("PREFIX " + sys.prefix)
''')


def test_the_magic_installs_into_the_kernels_environment(index, tmp_path):
    # The shell runs in a virtual environment of its own (seeing this interpreter's packages,
    # IPython and uv_ffi among them), so "the kernel's environment" is that one.
    root = str(tmp_path / "kernel-env")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", root], check=True)
    python = os.path.join(root, "bin", "python")
    done = subprocess.run([python, "-c", MAGIC_SESSION.format(url=index.url)], capture_output=True,
                          text=True, timeout=300, cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    # The changelog on stdout, uv's error text on stderr.
    assert " + alpha==1.0" in done.stdout and " + zeta==1.0" in done.stdout, done.stdout
    assert "no-such-package-anywhere" in done.stderr, done.stderr
    out = subprocess.run([python, "-c", "import importlib.metadata as m, json, sys;"
                          "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions(path=[sys.argv[1]])}))",
                          os.path.join(root, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")],
                         check=True, capture_output=True, text=True).stdout
    # beta 1.0 needs alpha>=1.0, which the first install satisfied already.
    assert json.loads(out) == {"alpha": "1.0", "beta": "1.0", "zeta": "1.0"}


def test_with_kernel_python_leaves_named_environments_alone():
    from uv_ffi.magic import with_kernel_python

    assert with_kernel_python(["pip", "install", "x"]) == ["pip", "install", "--python", sys.executable, "x"]
    for named in (["--python", "p"], ["-p", "p"], ["--python=p"], ["--system"], ["--target", "t"], ["-pp"]):
        assert with_kernel_python(["pip", "install", *named, "x"]) == ["pip", "install", *named, "x"]
    assert with_kernel_python(["venv", "x"]) == ["venv", "x"]
