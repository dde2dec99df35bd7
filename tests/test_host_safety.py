"""The library lives inside someone else's process: it must be safe to fork, to panic, to call
from many threads and from many processes at once, and it must leave the host's process-wide
state (cwd, environment, signals, limits, descriptors, terminal) as it found it.

Everything is asserted on disk (dist-info folders, RECORD files, and the environment's own
Python through importlib.metadata), never only on return values. Every wait is bounded: a hang
is a failure with a message, not a stuck test run.
"""

from __future__ import annotations

import csv
import faulthandler
import itertools
import json
import multiprocessing
import os
import random
import resource
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Callable, Dict, List, Optional, Tuple

import pytest

import uv_ffi
from uv_ffi import _native, errors, sample_index

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Seconds any child process, thread or subprocess gets before it counts as hung.
DEADLINE = 60.0


# --- helpers ----------------------------------------------------------------------------------


def base(venv, index) -> str:
    return "pip install --python %s -i %s " % (venv.python, index.url)


def ok(command: str) -> Tuple[List, List]:
    """Run a command that must succeed; return (installed, removed)."""
    code, installed, removed, error = uv_ffi.run(command)
    assert code == 0, "%s\n-> %s" % (command, error)
    return installed, removed


@pytest.fixture(autouse=True)
def hang_guard():
    """The last resort behind every deadline below: if a test hangs inside native code (where
    no Python timeout can reach: a fork, a call on the main thread), dump every thread's stack
    and end the run instead of blocking for ever."""
    faulthandler.dump_traceback_later(4 * DEADLINE, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def wait_child(pid: int, deadline: float = DEADLINE) -> Optional[int]:
    """Wait for a forked child with a deadline; a hung child is SIGKILLed and None returned."""
    end = time.monotonic() + deadline
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.02)


def in_child(work: Callable[[], None], report: str) -> None:
    """The body of a forked child: run ``work``, write any traceback to ``report``, and leave
    with os._exit (never return into pytest). SIGALRM ends a child its parent forgot."""
    code = 1
    try:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(int(DEADLINE * 2))
        work()
        code = 0
    except BaseException:  # noqa: BLE001 - everything must be reported, nothing may escape
        try:
            with open(report, "w") as handle:
                handle.write(traceback.format_exc())
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)


def child_outcome(pid: int, report: str) -> str:
    """'' when the child exited 0; otherwise why not (its traceback, or 'hung')."""
    status = wait_child(pid)
    if status is None:
        return "child %d hung (killed after %.0f s)" % (pid, DEADLINE)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return ""
    text = open(report).read() if os.path.exists(report) else "(no report)"
    return "child %d ended with status %#x:\n%s" % (pid, status, text)


def record_problems(site_packages: str) -> List[str]:
    """Every .dist-info must hold a RECORD, and every file the RECORD lists must exist."""
    problems = []
    for entry in sorted(os.listdir(site_packages)):
        if not entry.endswith(".dist-info"):
            continue
        record = os.path.join(site_packages, entry, "RECORD")
        if not os.path.isfile(record):
            problems.append("%s has no RECORD" % entry)
            continue
        with open(record, newline="") as handle:
            for row in csv.reader(handle):
                if not row or not row[0]:
                    continue
                path = os.path.normpath(os.path.join(site_packages, row[0]))
                if not os.path.lexists(path):
                    problems.append("%s lists %s, which is missing" % (entry, row[0]))
    return problems


def dist_infos_of(venv, name: str) -> List[str]:
    prefix = name.replace("-", "_") + "-"
    return [entry for entry in venv.dist_infos() if entry.startswith(prefix)]


def imported_version(venv, module: str) -> Tuple[str, str, int]:
    """(module.__version__, importlib.metadata version, number of distributions of that name)
    as the environment's own Python sees them."""
    code = (
        "import importlib, importlib.metadata as m, json, re, sys\n"
        "name = sys.argv[1]\n"
        "mod = importlib.import_module(name)\n"
        "count = sum(1 for d in m.distributions()\n"
        "            if re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() == name)\n"
        "print(json.dumps([mod.__version__, m.version(name), count]))\n"
    )
    out = subprocess.run(
        [venv.python, "-I", "-c", code, module],
        check=True, capture_output=True, text=True, timeout=DEADLINE,
    )
    return tuple(json.loads(out.stdout))


def disk_pairs(venv) -> List[Tuple[str, str]]:
    """The truth, as the project's coherency tests define it: the ``.dist-info`` folders in
    site-packages as sorted normalised (name, version) pairs (what ``uv pip list`` shows)."""
    pairs = []
    for entry in venv.dist_infos():
        name, version = entry[: -len(".dist-info")].split("-", 1)
        pairs.append((sample_index.normalize(name), version))
    return sorted(pairs)


def engine_view_equals_disk(venv) -> None:
    view = uv_ffi.get_site_packages_cache(python=venv.python)
    assert view == disk_pairs(venv), "the engine's view differs from the disk"


def join_all(threads: List[threading.Thread], deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, "threads still running after %.0f s: %s" % (deadline, hung)


def subprocess_env() -> Dict[str, str]:
    env = dict(os.environ)  # carries UV_CACHE_DIR from conftest
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


# --- 1. fork safety ---------------------------------------------------------------------------


def test_fork_while_another_thread_installs(make_venv, index, tmp_path):
    """A thread swaps alpha 1.0 <-> 1.1 in venv A in a loop while the main thread forks five
    times. Each child starts a fresh engine, reads a view and installs beta into its own venv.
    No fork and no child may hang; every child's venv is right on disk; A stays coherent."""
    venv_a = make_venv()
    children_venvs = [make_venv() for _ in range(5)]
    ok(base(venv_a, index) + "alpha==1.0")  # the engine runs in this process

    stop = threading.Event()
    churn_errors: List[str] = []
    swaps = [0]

    def churn():
        for version in itertools.cycle(["1.1", "1.0"]):
            if stop.is_set():
                return
            code, _, _, error = uv_ffi.run(base(venv_a, index) + "alpha==" + version)
            if code != 0:
                churn_errors.append(error)
                return
            swaps[0] += 1

    def child_work(venv_b):
        def work():
            assert uv_ffi.get_site_packages_cache(python=venv_b.python) == []
            code, installed, removed, error = uv_ffi.run(base(venv_b, index) + "beta==1.0")
            assert code == 0, error
            assert (installed, removed) == ([("alpha", "2.0"), ("beta", "1.0")], [])
            assert uv_ffi.get_site_packages_cache(python=venv_b.python) == installed
            # A no-op on the child's warm engine.
            assert uv_ffi.install(base(venv_b, index) + "beta==1.0").satisfied

        return work

    thread = threading.Thread(target=churn, name="churn", daemon=True)
    children = []
    thread.start()
    try:
        while swaps[0] < 2 and thread.is_alive():
            time.sleep(0.01)
        for number, venv_b in enumerate(children_venvs):
            time.sleep(random.uniform(0.0, 0.03))
            report = str(tmp_path / ("child%d.txt" % number))
            pid = os.fork()
            if pid == 0:
                in_child(child_work(venv_b), report)
            children.append((pid, report))
        outcomes = [child_outcome(pid, report) for pid, report in children]
    finally:
        stop.set()
        join_all([thread])
    assert churn_errors == []
    assert [o for o in outcomes if o] == []
    assert swaps[0] >= 2
    for venv_b in children_venvs:
        assert venv_b.installed() == {"alpha": "2.0", "beta": "1.0"}
        assert record_problems(venv_b.site_packages) == []
    # A was never left half-changed by a fork.
    assert len(dist_infos_of(venv_a, "alpha")) == 1
    assert record_problems(venv_a.site_packages) == []
    version = venv_a.metadata_version("alpha")
    assert imported_version(venv_a, "alpha") == (version, version, 1)
    engine_view_equals_disk(venv_a)


def _pool_install(job: Tuple[str, str]) -> Tuple[int, List, str, int]:
    """A multiprocessing worker: install beta into its own venv (runs in a forked worker)."""
    python, url = job
    code, installed, _, error = uv_ffi.run("pip install --python %s -i %s beta==2.0" % (python, url))
    return code, installed, error, os.getpid()


def test_multiprocessing_fork_pool_installs(make_venv, index):
    """A fork-context Pool of 2, started after the engine ran in the parent: each task installs
    into its own venv. Bounded wait; results checked on disk."""
    warm = make_venv()
    ok(base(warm, index) + "alpha==1.0")
    venvs = [make_venv() for _ in range(4)]
    context = multiprocessing.get_context("fork")
    pool = context.Pool(2)
    try:
        pending = pool.map_async(_pool_install, [(v.python, index.url) for v in venvs], chunksize=1)
        try:
            results = pending.get(timeout=DEADLINE)
        except multiprocessing.TimeoutError:
            pytest.fail("the fork-context pool hung for %.0f s" % DEADLINE)
    finally:
        pool.terminate()
        pool.join()
    for code, installed, error, pid in results:
        assert code == 0, error
        assert installed == [("alpha", "2.0"), ("beta", "2.0")]
        assert pid != os.getpid()
    for venv in venvs:
        assert venv.installed() == {"alpha": "2.0", "beta": "2.0"}
        assert record_problems(venv.site_packages) == []
    # The parent's engine is untouched by its children.
    assert uv_ffi.install(base(warm, index) + "alpha==1.0").satisfied


def test_uv_command_line_in_a_forked_child_is_a_clear_error(venv, index, tmp_path):
    """Commands that run through uv's own command line cannot run in a forked child (rayon's
    global pool stayed in the parent): a clear error mentioning the fork, exit code 2, never a
    hang, nothing changed; the warm engine still works in that child."""
    ok(base(venv, index) + "alpha==1.0")
    exclude = base(venv, index) + "--exclude-newer 2030-01-01 alpha==1.1"
    listing = "pip tree --python %s" % venv.python
    # Both really take uv's command line (so this test exercises that path).
    assert uv_ffi.parse_command(exclude)["route"] == "uv"
    assert uv_ffi.parse_command(listing)["route"] == "uv"
    before = venv.listing()
    report = str(tmp_path / "child.txt")

    def work():
        for command in (listing, exclude, "venv %s" % (tmp_path / "child-venv")):
            code, installed, removed, error = uv_ffi.run(command)
            assert (code, installed, removed) == (2, [], []), (command, code, error)
            assert "forked" in error, error
        with pytest.raises(errors.InvalidRequest) as info:
            uv_ffi.install(listing)
        assert "forked" in info.value.message and info.value.exit_code == 2
        assert venv.listing() == before
        assert not os.path.exists(tmp_path / "child-venv")
        # Reads the engine answers itself still work there.
        assert uv_ffi.install("pip list --python %s" % venv.python).engine == "view"
        # The warm engine is still there for what it honours.
        assert ok(base(venv, index) + "alpha==1.1") == ([("alpha", "1.1")], [("alpha", "1.0")])

    pid = os.fork()
    if pid == 0:
        in_child(work, report)
    outcome = child_outcome(pid, report)
    assert outcome == ""
    assert venv.dist_infos() == ["alpha-1.1.dist-info"]
    assert venv.metadata_version("alpha") == "1.1"
    # In the parent, the same commands run through uv's command line as usual.
    result = uv_ffi.install(listing)
    assert result.engine == "uv" and "alpha" in result.stdout


def test_a_forked_child_watches_the_configuration_files_itself(venv, index, tmp_path, monkeypatch):
    """The engine learns of a new configuration file from change notifications, not by looking
    at every file on every call; a forked child does not read its parent's notifications. A
    uv.toml written in the child applies to the child's next call (there uv's command line, which
    a forked child refuses), one removed stops applying; the parent, whose notifications the
    child left alone, sees the file the child left behind."""
    monkeypatch.chdir(tmp_path)
    command = base(venv, index) + "alpha==1.0"
    ok(command)
    assert uv_ffi.install(command).engine == "warm"
    config = tmp_path / "uv.toml"
    report = str(tmp_path / "child.txt")

    def work():
        config.write_text("[pip]\nreinstall = true\n")
        code, _, _, error = uv_ffi.run(command)
        assert code == 2 and "forked" in error, error
        config.unlink()
        assert uv_ffi.install(command).engine == "warm"
        config.write_text("[pip]\nreinstall = true\n")
        assert uv_ffi.run(command)[0] == 2

    pid = os.fork()
    if pid == 0:
        in_child(work, report)
    assert child_outcome(pid, report) == ""
    result = uv_ffi.install(command)
    assert result.engine == "uv" and result.installed == (("alpha", "1.0"),)
    config.unlink()
    assert uv_ffi.install(command).engine == "warm"


# --- 2. panics --------------------------------------------------------------------------------


@pytest.mark.parametrize("first_call", ["view", "run"])
def test_a_panic_while_the_engine_starts_is_recoverable(first_call, venv, index, capfd):
    """debug_panic at "start" stops the engine and makes its next start panic: that call is
    an EnginePanic (nothing changed, nothing printed), and the call after it works."""
    ok(base(venv, index) + "alpha==1.0")
    capfd.readouterr()
    assert _native.call("debug_panic", {"at": "start"}) == {}
    if first_call == "view":
        with pytest.raises(errors.EnginePanic) as info:
            uv_ffi.get_site_packages_cache(python=venv.python)
    else:
        with pytest.raises(errors.EnginePanic) as info:
            uv_ffi.install(base(venv, index) + "alpha==1.1")
    assert info.value.kind == "panic"
    assert "while the engine starts" in info.value.message
    assert venv.dist_infos() == ["alpha-1.0.dist-info"]
    # The next call starts the engine normally.
    assert ok(base(venv, index) + "alpha==1.1") == ([("alpha", "1.1")], [("alpha", "1.0")])
    assert venv.metadata_version("alpha") == "1.1"
    assert uv_ffi.get_site_packages_cache(python=venv.python) == [("alpha", "1.1")]
    assert capfd.readouterr() == ("", ""), "a panic reached the terminal"


def test_a_panic_inside_a_call_is_silent_and_the_engine_keeps_working(venv, index, capfd):
    ok(base(venv, index) + "alpha==1.0")
    capfd.readouterr()
    for _ in range(3):
        pointer = _native.lib.uv_ffi_debug_panic(b"{}")
        try:
            reply = json.loads(_native.ffi.string(pointer))
        finally:
            _native.lib.uv_ffi_string_free(pointer)
        assert reply["ok"] is False and reply["error"]["kind"] == "panic"
        assert "requested by uv_ffi_debug_panic" in reply["error"]["message"]
    assert capfd.readouterr() == ("", ""), "a caught panic was printed"
    assert ok(base(venv, index) + "alpha==2.0") == ([("alpha", "2.0")], [("alpha", "1.0")])
    assert venv.metadata_version("alpha") == "2.0"
    engine_view_equals_disk(venv)


PANIC_HOOK_SCRIPT = r"""
import json, sys
import uv_ffi
from uv_ffi import _native
python, url = sys.argv[1], sys.argv[2]
print(uv_ffi.run("pip install --python %s -i %s alpha==1.0" % (python, url))[0], flush=True)
for at in ("call", "start", "call"):
    try:
        _native.call("debug_panic", {"at": at})
        if at == "start":
            uv_ffi.get_site_packages_cache(python=python)
    except uv_ffi.EnginePanic as exc:
        print("caught", exc.kind, flush=True)
print(uv_ffi.run("pip install --python %s -i %s alpha==1.1" % (python, url))[0], flush=True)
"""


@pytest.mark.parametrize("log", ["0", "1"])
def test_the_hook_before_the_library_still_reports_panics(log, venv, index):
    """The library's hook only silences its own panics and hands everything else to the hook
    that was there before. From outside, the one way to see that chain is UV_FFI_LOG=1, which
    makes the library pass its own panics on too: then Rust's default hook (the previous one)
    prints them; with UV_FFI_LOG=0 the terminal stays silent. (A panic raised by other Rust
    code cannot be provoked from Python: another Rust library carries its own std and hook.)"""
    env = subprocess_env()
    env["UV_FFI_LOG"] = log
    env.pop("RUST_BACKTRACE", None)
    out = subprocess.run(
        [sys.executable, "-c", PANIC_HOOK_SCRIPT, venv.python, index.url],
        capture_output=True, text=True, env=env, timeout=DEADLINE,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["0", "caught panic", "caught panic", "caught panic", "0", ""]
    assert venv.metadata_version("alpha") == "1.1"
    panics = out.stderr.count("panicked at")
    if log == "1":
        assert panics == 3, out.stderr
        assert "requested by uv_ffi_debug_panic" in out.stderr
    else:
        assert out.stderr == ""


# --- 3. nothing process-wide changes ----------------------------------------------------------


def c_environ() -> Dict[bytes, bytes]:
    """The C library's environment (what getenv/setenv see), which os.environ only copies once
    at start-up: a setenv in native code shows here and not in os.environ."""
    import ctypes

    libc = ctypes.CDLL(None)
    environ = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, "environ")
    result = {}
    for i in itertools.count():
        entry = environ[i]
        if entry is None:
            break
        key, _, value = entry.partition(b"=")
        result[key] = value
    return result


def signal_state() -> Dict[str, object]:
    status = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key = line.split(":", 1)[0]
            if key in ("SigBlk", "SigIgn", "SigCgt"):
                status[key] = line.strip()
    handlers = {}
    for sig in sorted(signal.valid_signals()):
        try:
            handlers[int(sig)] = signal.getsignal(sig)
        except (ValueError, OSError):
            continue
    status["python handlers"] = handlers
    status["blocked (main thread)"] = sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    return status


def descriptors() -> Dict[int, str]:
    result = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            result[int(name)] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            continue  # the listing's own descriptor, closed by now
    return result


def process_state() -> Dict[str, object]:
    umask = os.umask(0o022)
    os.umask(umask)
    return {
        "cwd": os.getcwd(),
        "os.environ": dict(os.environ),
        "C environ": c_environ(),
        "umask": umask,
        "signals": signal_state(),
        "RLIMIT_NOFILE": resource.getrlimit(resource.RLIMIT_NOFILE),
        "RLIMIT_STACK": resource.getrlimit(resource.RLIMIT_STACK),
        "fd count": len(os.listdir("/proc/self/fd")),
        "stdio": {fd: (os.readlink("/proc/self/fd/%d" % fd), os.fstat(fd).st_ino) for fd in (0, 1, 2)},
        "stdio flags": {fd: __import__("fcntl").fcntl(fd, __import__("fcntl").F_GETFL) for fd in (0, 1, 2)},
    }


def test_nothing_process_wide_changes(make_venv, index, tmp_path, capfd):
    """A series of calls through every route leaves cwd, the environment (Python's copy and the
    C library's), umask, signal dispositions and masks, resource limits, the number of open
    descriptors and where descriptors 0/1/2 point exactly as they were.

    Terminal output: the engine itself writes nothing to descriptors 1 and 2 (commands run
    through uv's command line are captured into the reply). The one thing that does reach the
    terminal is deliberate and on the Python side: ``run()`` echoes, through sys.stdout and
    sys.stderr, the text of commands whose purpose is output (``pip list``), exactly
    ``RunResult.stdout``/``.stderr``. The typed ``install()`` never echoes, so after it the
    terminal must be silent."""
    venv = make_venv()
    created = [str(tmp_path / ("made-by-uv-%d" % i)) for i in range(2)]

    def series(round_number: int) -> str:
        """Returns the text run() echoed for `pip list`."""
        ok(base(venv, index) + "alpha==1.0")                   # warm: install or no-op
        ok(base(venv, index) + "alpha==1.1")                   # warm: swap
        ok(base(venv, index) + "alpha==1.0")                   # warm: swap back
        listing = "pip list --python %s" % venv.python
        result = uv_ffi.install(listing)                        # the engine's snapshot, typed API
        assert result.engine == "view" and "alpha" in result.stdout and "1.0" in result.stdout
        assert capfd.readouterr() == ("", ""), "install() or the engine printed"
        code, _, _, error = uv_ffi.run(listing)                 # the engine's snapshot, echoed
        assert code == 0, error
        echoed = capfd.readouterr()
        assert echoed == (result.stdout, result.stderr), "run() echoes exactly what uv prints"
        tree = "pip tree --python %s" % venv.python
        result = uv_ffi.install(tree)                           # uv's command line, typed API
        assert result.engine == "uv" and "alpha" in result.stdout
        assert capfd.readouterr() == ("", ""), "install() or uv's command line printed"
        assert uv_ffi.run(tree)[0] == 0                         # uv's command line, echoed
        assert capfd.readouterr() == (result.stdout, result.stderr), "run() echoes what uv printed"
        made = uv_ffi.install("venv %s --python %s" % (created[round_number], sys.executable))
        assert made.engine == "uv"
        assert os.path.isfile(os.path.join(created[round_number], "pyvenv.cfg"))
        assert uv_ffi.run(base(venv, index) + "alpha==9.9")[0] == 1           # warm failure
        assert uv_ffi.run("pip show --python %s no-such-dist" % venv.python)[0] != 0  # uv failure
        assert uv_ffi.run("pip list --python /no/such/python")[0] != 0              # uv failure
        return echoed[0]

    # One warm-up call: the engine starts (its threads, the cache's lock, a connection to the
    # index), which may open a few descriptors once. From here on nothing may change.
    ok(base(venv, index) + "alpha==1.0")
    capfd.readouterr()
    before = process_state()
    fds_before = descriptors()
    series(0)
    series(1)
    after = process_state()
    fds_after = descriptors()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    for key in before:
        assert after[key] == before[key], "%s changed:\nbefore %r\nafter  %r" % (key, before[key], after[key])
    assert fds_after == fds_before


# --- 5. concurrency ---------------------------------------------------------------------------


def test_eight_threads_install_into_their_own_venvs(make_venv, index):
    venvs = [make_venv() for _ in range(8)]
    barrier = threading.Barrier(len(venvs), timeout=DEADLINE)
    failures: List[str] = []

    def work(venv):
        try:
            barrier.wait()
            assert ok(base(venv, index) + "alpha==1.0") == ([("alpha", "1.0")], [])
            assert ok(base(venv, index) + "alpha==1.1") == ([("alpha", "1.1")], [("alpha", "1.0")])
        except BaseException:  # noqa: BLE001
            failures.append(traceback.format_exc())

    threads = [threading.Thread(target=work, args=(v,), daemon=True) for v in venvs]
    for thread in threads:
        thread.start()
    join_all(threads)
    assert failures == []
    for venv in venvs:
        assert venv.dist_infos() == ["alpha-1.1.dist-info"]
        assert imported_version(venv, "alpha") == ("1.1", "1.1", 1)
        assert record_problems(venv.site_packages) == []
        engine_view_equals_disk(venv)


def test_four_threads_swap_versions_in_one_venv(venv, index):
    versions = ["1.0", "1.1", "2.0"]
    barrier = threading.Barrier(4, timeout=DEADLINE)
    failures: List[str] = []

    def work(seed):
        rng = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(5):
                code, installed, removed, error = uv_ffi.run(base(venv, index) + "alpha==" + rng.choice(versions))
                assert code == 0, error
        except BaseException:  # noqa: BLE001
            failures.append(traceback.format_exc())

    threads = [threading.Thread(target=work, args=(seed,), daemon=True) for seed in range(4)]
    for thread in threads:
        thread.start()
    join_all(threads)
    assert failures == []
    alphas = dist_infos_of(venv, "alpha")
    assert len(alphas) == 1, alphas
    assert record_problems(venv.site_packages) == []
    version = alphas[0][len("alpha-"):-len(".dist-info")]
    assert imported_version(venv, "alpha") == (version, version, 1)
    engine_view_equals_disk(venv)
    assert uv_ffi.get_site_packages_cache(python=venv.python) == [("alpha", version)]


SWAP_SCRIPT = r"""
import random, sys
import uv_ffi
python, url, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
for _ in range(10):
    version = rng.choice(["1.0", "1.1", "2.0"])
    code, installed, removed, error = uv_ffi.run(
        "pip install --python %s -i %s alpha==%s" % (python, url, version))
    if code != 0:
        sys.exit("alpha==%s failed: %s" % (version, error))
"""


def test_two_processes_swap_versions_in_one_venv(venv, index):
    """Two processes, each with its own engine, swap alpha versions in the same venv at once
    (10 swaps each). uv's own CLI does this without a single failure (it holds the
    environment's lock while it reads site-packages); so must the engine. The end state is
    checked first (one alpha, complete, importable, and this process's view agrees), then that
    every swap succeeded."""
    ok(base(venv, index) + "alpha==1.0")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SWAP_SCRIPT, venv.python, index.url, str(seed)],
            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for seed in (1, 2)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=DEADLINE))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    alphas = dist_infos_of(venv, "alpha")
    assert len(alphas) == 1, alphas
    assert record_problems(venv.site_packages) == []
    version = alphas[0][len("alpha-"):-len(".dist-info")]
    assert imported_version(venv, "alpha") == (version, version, 1)
    # This process's engine has a stale view of that venv: the default policy notices.
    engine_view_equals_disk(venv)
    failed = [err for process, (_, err) in zip(processes, outputs) if process.returncode != 0]
    assert failed == [], "a swap failed while the other process swapped too"


KILLED_SCRIPT = r"""
import itertools, sys
import uv_ffi
python, url, links = sys.argv[1], sys.argv[2], sys.argv[3]
base = "pip install --python %s -i %s --find-links %s " % (python, url, links)
code, _, _, error = uv_ffi.run(base + "alpha==1.0 beta==1.0 bulky==1.0")
if code != 0:
    sys.exit(error)
print("ready", flush=True)
for version in itertools.cycle(["2.0", "1.0"]):
    code, _, _, error = uv_ffi.run(
        base + "--reinstall alpha==%s beta==%s bulky==%s" % (version, version, version))
    if code != 0:
        sys.exit(error)
"""


@pytest.fixture(scope="module")
def bulky_links(tmp_path_factory):
    """A --find-links folder with a package of many files, so that a kill lands mid-install."""
    folder = str(tmp_path_factory.mktemp("bulky"))
    for version in ("1.0", "2.0"):
        sample_index.build_wheel(folder, "bulky", version, payload_files=400)
    return folder


def test_an_install_killed_midway_is_repaired_by_the_next_reinstall(venv, index, bulky_links):
    """A subprocess reinstalls alpha/beta/bulky 1.0 <-> 2.0 in a loop and is SIGKILLed after
    various delays. Each time, a --reinstall from this process must leave a complete
    environment: exactly the requested dist-infos, each with a RECORD whose files all exist."""
    final = (
        "pip install --python %s -i %s --find-links %s --reinstall alpha==1.0 beta==1.0 bulky==1.0"
        % (venv.python, index.url, bulky_links)
    )
    for delay in (0.0, 0.005, 0.02, 0.05, 0.1, 0.2):
        process = subprocess.Popen(
            [sys.executable, "-c", KILLED_SCRIPT, venv.python, index.url, bulky_links],
            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            ready, _, _ = select.select([process.stdout], [], [], DEADLINE)
            line = process.stdout.readline() if ready else b""
            assert line == b"ready\n", "the subprocess did not start: %r %r" % (line, process.stderr.read())
            time.sleep(delay)
            assert process.poll() is None, process.stderr.read()
            process.kill()
            process.wait(timeout=DEADLINE)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
            process.stderr.close()
        assert process.returncode == -signal.SIGKILL
        code, installed, removed, error = uv_ffi.run(final)
        assert code == 0, "after a kill at %.3f s: %s" % (delay, error)
        # A kill can leave a .dist-info folder without RECORD, which uv itself cannot remove
        # either (see the test below); everything else must be complete.
        left = [d for d in venv.dist_infos()
                if not os.path.exists(os.path.join(venv.site_packages, d, "RECORD"))]
        complete = [d for d in venv.dist_infos() if d not in left]
        assert complete == [
            "alpha-1.0.dist-info", "beta-1.0.dist-info", "bulky-1.0.dist-info",
        ], "after a kill at %.3f s" % delay
        engine_view_equals_disk(venv)
        if not left:
            assert record_problems(venv.site_packages) == [], "after a kill at %.3f s" % delay
            assert venv.installed() == {"alpha": "1.0", "beta": "1.0", "bulky": "1.0"}
            assert imported_version(venv, "bulky") == ("1.0", "1.0", 1)


def test_a_dist_info_left_empty_by_a_kill_is_seen_and_treated_as_uv_treats_it(make_venv, index):
    """The deterministic form of what a SIGKILL in the middle of linking or removing files can
    leave behind (seen in the test above): an empty ``alpha-2.0.dist-info`` folder beside the
    complete alpha 1.0. The engine's view must show what is on disk (both folders, as
    ``uv pip list`` does), and a --reinstall must leave exactly what uv's own command leaves in
    the same situation (uv cannot remove files of a distribution without a RECORD), with the
    view still equal to the disk."""
    from uv_ffi.demo import find_uv

    engine_venv, uv_venv = make_venv(), make_venv()
    for venv in (engine_venv, uv_venv):
        ok(base(venv, index) + "alpha==1.0")
        os.mkdir(os.path.join(venv.site_packages, "alpha-2.0.dist-info"))
    assert disk_pairs(engine_venv) == [("alpha", "1.0"), ("alpha", "2.0")]
    # uv's own listing (through uv's command line in this process) sees both.
    listed = json.loads(uv_ffi.install("pip list --format json --python %s" % engine_venv.python).stdout)
    assert sorted((p["name"], p["version"]) for p in listed) == disk_pairs(engine_venv)
    engine_view_equals_disk(engine_venv)
    code, installed, removed, error = uv_ffi.run(base(engine_venv, index) + "--reinstall alpha==1.0")
    assert code == 0, error
    assert installed == [("alpha", "1.0")]
    done = subprocess.run(
        [find_uv(), "pip", "install", "--python", uv_venv.python, "-i", index.url, "--reinstall", "alpha==1.0"],
        capture_output=True, text=True, timeout=DEADLINE,
    )
    assert done.returncode == 0, done.stderr
    assert engine_venv.dist_infos() == uv_venv.dist_infos()
    assert engine_venv.listing() == uv_venv.listing()
    # The environment's own Python sees the same thing in both (its metadata API chokes on the
    # empty folder's missing METADATA, so ask for the version only).
    assert engine_venv.metadata_version("alpha") == uv_venv.metadata_version("alpha") == "1.0"
    engine_view_equals_disk(engine_venv)


DUPLICATE_PATHS_SCRIPT = r"""
import json, sys
from uv_ffi._native import ffi, lib
python, folder = sys.argv[1], sys.argv[2]
request = {"argv": ["pip", "install", "--python", python, "--no-index", "--offline", "--dry-run",
                    ".", ".", ".", ".", "."], "cwd": folder}
pointer = lib.uv_ffi_run(json.dumps(request).encode())
print(ffi.string(pointer).decode(), flush=True)
lib.uv_ffi_string_free(pointer)
"""


def test_the_same_local_path_given_several_times_does_not_wedge_the_engine(venv, tmp_path):
    """Found by tests/test_fuzz.py: ``pip install . . . . .`` (one local folder named five
    times; here an empty folder, so the answer is an error) must answer, as uv does. Each try
    runs in its own process, so a wedged engine cannot take this test session down with it;
    whether it hangs depends on timing, so it gets up to 20 tries."""
    folder = tmp_path / "not-a-project"
    folder.mkdir()
    for attempt in range(20):
        env = subprocess_env()
        env["UV_CACHE_DIR"] = str(tmp_path / ("cache%d" % attempt))  # an empty cache each time
        try:
            out = subprocess.run(
                [sys.executable, "-c", DUPLICATE_PATHS_SCRIPT, venv.python, str(folder)],
                env=env, capture_output=True, text=True, timeout=20,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("attempt %d: uv_ffi_run did not answer within 20 s" % attempt)
        assert out.returncode == 0, out.stderr
        reply = json.loads(out.stdout)
        assert reply["ok"] is False and "does not appear to be a Python project" in reply["error"]["message"]
    assert venv.dist_infos() == []
