"""Side-by-side benchmark: this engine against the tools users would use instead.

    python benchmarks/compare.py [--rounds 15] [--wheels DIR] [--out benchmarks/results.md] [--no-large-graph]
    python benchmarks/compare.py --rounds 3 --only cold,suite   # some stages, printed only

One package index on 127.0.0.1 serves every tool (generated wheels, or a folder of real wheels
given with --wheels). Each tool runs in its own process with its own cache and environments:

- ``uv-ffi``: this engine, warm in a long-lived worker, ``--link-mode hardlink``;
- ``uv pip``: the pinned ``uv`` command (0.12.5) as a subprocess, with its default link mode
  (clone, falling back to hardlink on this filesystem) and with ``--link-mode hardlink``;
- ``pip``: ``pip install`` as a subprocess (no-op and swap only);
- ``upstream``: the upstream ``uv-ffi`` package (last release) in its own virtual environment,
  warm in a long-lived worker, with its default link mode and with ``--link-mode hardlink``.

A last stage times one large resolution (``benchmarks/large_graph.py``, its own index).

Tools alternate round by round. After every timed call the end state is checked on disk; a
wrong result is reported as a failure, never as a time. Medians, min and max per scenario and
tool, and each tool's ratio to this engine, are printed and written as Markdown.
"""

from __future__ import annotations

import abc
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from uv_ffi import sample_index  # noqa: E402
from uv_ffi.demo import find_uv  # noqa: E402

UPSTREAM = "uv-ffi==0.10.8.post15"
SWAP = "bench-swap"
SWAP_VERSIONS = ("1.0.0", "1.1.0")
SUITE = ["bench-lib-%02d" % i for i in range(1, 16)]
NOOP_FIRST = "warm no-op, first call after other tools ran"
SUITE_SCENARIO = "15 packages, new env, cached wheels"
COLD_INNER = "cold start: import + first install, in a new process"
COLD_WHOLE = "cold start: whole new process"
COLD_PYTHON = "interpreter start (python -I -c pass)"
NEW_VERSION = "uv-ffi (new version)"
LINK_MODES = ("hardlink", "copy", "symlink")
README_START = "<!-- benchmark:start -->"
README_END = "<!-- benchmark:end -->"
# The stages of a run, in order (``--only`` names them): Bench methods.
STAGES = {
    "swap": "swap_and_noop", "callbacks": "callbacks", "read": "read_commands", "target": "target_installs",
    "suite": "suite_installs", "cold": "cold_starts", "views": "views", "facts": "process_facts",
}


class Failure(Exception):
    """A tool left the wrong thing on disk (or reported an error)."""


# --- the index -------------------------------------------------------------------------------


def build_packages(folder: str, swap_files: int) -> List[str]:
    wheels = [sample_index.build_wheel(folder, SWAP, v, payload_files=swap_files) for v in SWAP_VERSIONS]
    for i, name in enumerate(SUITE):
        # A few dependencies between the suite's packages, as in a real application.
        requires = [SUITE[i - 1]] if i % 4 == 3 else []
        wheels.append(sample_index.build_wheel(folder, name, "1.0.0", requires, payload_files=30))
    wheels.append(sample_index.build_wheel(folder, "bench-app", "1.0.0", SUITE[:3], payload_files=10))
    return wheels


# --- disk checks -----------------------------------------------------------------------------


def site_packages(prefix: str) -> str:
    lib = os.path.join(prefix, "lib")
    for entry in os.listdir(lib):
        candidate = os.path.join(lib, entry, "site-packages")
        if os.path.isdir(candidate):
            return candidate
    raise Failure("no site-packages under %s" % prefix)


def dist_infos(folder: str) -> Dict[str, str]:
    found = {}
    if os.path.isdir(folder):
        for entry in os.listdir(folder):
            if entry.endswith(".dist-info"):
                name, version = entry[: -len(".dist-info")].split("-", 1)
                found[name.replace("_", "-").lower()] = version
    return found


def expect(folder: str, wanted: Dict[str, str]) -> None:
    present = dist_infos(folder)
    for name, version in wanted.items():
        if present.get(name) != version:
            raise Failure("%s: expected %s==%s, found %s" % (folder, name, version, present.get(name)))


def make_venv(path: str) -> str:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True)
    return path


# --- tools -----------------------------------------------------------------------------------


WORKER_PREFIX = "UV_FFI_BENCH_WORKER_PREFIX"


class Worker:
    """A long-lived process that imports ``uv_ffi`` and times calls in-process."""

    def __init__(self, python: str, env: Dict[str, str]) -> None:
        # `link_order.py` runs the workers under valgrind to record which functions they run.
        prefix = os.environ.get(WORKER_PREFIX, "").split()
        self.process = subprocess.Popen(
            prefix + [python, os.path.join(HERE, "worker.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, text=True,
        )
        self.hello = self.call({"op": "hello"})
        self.last_phases: Dict[str, int] = {}
        self.last_reply: dict = {}

    def call(self, request: dict) -> dict:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise Failure("the worker exited")
        reply = json.loads(line)
        if "exception" in reply:
            raise Failure(reply["exception"])
        return reply

    def run(self, cmd: str, **flags: bool) -> float:
        reply = self.call(dict({"op": "run", "cmd": cmd}, **flags))
        self.last_reply = reply
        if reply["rc"] != 0:
            raise Failure("exit code %s: %s" % (reply["rc"], reply["error"][:300]))
        self.last_phases = reply.get("phases", {})
        return reply["ms"]

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=300 if os.environ.get(WORKER_PREFIX) else 30)


class Tool(abc.ABC):
    """One way of running ``pip install``: how to run a command, timed, and where it installs."""

    def __init__(self, name: str, link_args: str) -> None:
        self.name = name
        self.link_args = link_args
        self.venv = ""

    @abc.abstractmethod
    def install(self, args: str) -> float:
        """Run ``pip install <args>`` and return the milliseconds it took."""

    def close(self) -> None:
        pass


class WorkerTool(Tool):
    def __init__(self, name: str, link_args: str, python: str, env: Dict[str, str]) -> None:
        super().__init__(name, link_args)
        self.worker = Worker(python, env)

    def install(self, args: str) -> float:
        return self.worker.run("pip install %s %s" % (self.link_args, args))

    def close(self) -> None:
        self.worker.close()


class CommandTool(Tool):
    def __init__(self, name: str, link_args: str, argv: List[str], env: Dict[str, str],
                 python_before_command: bool = False) -> None:
        super().__init__(name, link_args)
        self.argv = argv
        self.env = env
        # pip takes `--python` as a general option, before the subcommand; uv after it.
        self.python_before_command = python_before_command

    def install(self, args: str) -> float:
        words = args.split()
        prefix: List[str] = []
        if self.python_before_command:
            if "--python" in words:
                at = words.index("--python")
                prefix = words[at:at + 2]
                del words[at:at + 2]
        command = self.argv + prefix + ["install", "-q"] + self.link_args.split() + words
        start = time.perf_counter()
        done = subprocess.run(command, env=self.env, capture_output=True, text=True)
        elapsed = (time.perf_counter() - start) * 1000.0
        if done.returncode != 0:
            raise Failure("exit code %s: %s" % (done.returncode, done.stderr[-300:]))
        return elapsed


# --- the benchmark ---------------------------------------------------------------------------


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.work = tempfile.mkdtemp(prefix="uv-ffi-bench-")
        self.results: Dict[str, Dict[str, List[float]]] = {}
        self.failures: Dict[str, Dict[str, str]] = {}
        self.phases: Dict[str, Dict[str, List[float]]] = {}
        self.notes: List[str] = []
        self.tools: List[Tool] = []
        self.url = ""

    def path(self, *parts: str) -> str:
        return os.path.join(self.work, *parts)

    def record(self, scenario: str, tool: str, value: float) -> None:
        self.results.setdefault(scenario, {}).setdefault(tool, []).append(value)

    def attempt(self, scenario: str, tool: str, action: Callable[[], float]) -> None:
        if tool in self.failures.get(scenario, {}):
            return
        try:
            self.record(scenario, tool, action())
        except Failure as exc:
            self.failures.setdefault(scenario, {})[tool] = str(exc)
            return
        if tool == "uv-ffi" and self.engine.worker.last_phases:
            # The engine's own account of the call just timed, phase by phase.
            for phase, us in self.engine.worker.last_phases.items():
                self.phases.setdefault(scenario, {}).setdefault(phase, []).append(us)
            self.engine.worker.last_phases = {}

    def attempt_many(self, scenarios, tool: str, action: Callable[[], Dict[str, float]]) -> None:
        """One timed action whose figures go to several scenarios (a failure to all of them)."""
        if all(tool in self.failures.get(s, {}) for s in scenarios):
            return
        try:
            values = action()
        except Failure as exc:
            for scenario in scenarios:
                self.failures.setdefault(scenario, {}).setdefault(tool, str(exc))
            return
        for scenario in scenarios:
            if tool not in self.failures.get(scenario, {}):
                self.record(scenario, tool, values[scenario])

    def env_with_cache(self, name: str) -> Dict[str, str]:
        env = dict(os.environ, UV_CACHE_DIR=self.path("cache-" + name), PIP_CACHE_DIR=self.path("pipcache-" + name))
        env.pop("UV_FFI_PROFILE", None)
        return env

    # Tools -----------------------------------------------------------------------------------

    def start_tools(self) -> None:
        hard = "--link-mode hardlink"
        self.engine = WorkerTool("uv-ffi", hard, sys.executable, self.env_with_cache("engine"))
        self.tools.append(self.engine)
        uv = find_uv()
        if uv:
            version = subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.strip()
            self.notes.append("uv command: %s" % version)
            self.tools.append(CommandTool("uv pip (default link)", "", [uv, "pip"], self.env_with_cache("uv")))
            self.tools.append(CommandTool("uv pip (hardlink)", hard, [uv, "pip"], self.env_with_cache("uv-hard")))
        if not self.args.skip_pip:
            self.tools.append(CommandTool("pip", "", [sys.executable, "-m", "pip", "--disable-pip-version-check"],
                                          self.env_with_cache("pip"), python_before_command=True))
        self.upstream_python = None
        if not self.args.skip_upstream:
            self.upstream_python = self.install_upstream()
        if self.upstream_python:
            self.tools.append(WorkerTool("upstream (default link)", "", self.upstream_python, self.env_with_cache("up")))
            self.tools.append(WorkerTool("upstream (hardlink)", hard, self.upstream_python, self.env_with_cache("up-hard")))
        for tool in self.tools:
            tool.venv = make_venv(self.path("venv-" + tool.name.replace(" ", "_").replace("(", "").replace(")", "")))

    def install_upstream(self) -> Optional[str]:
        if self.args.upstream_python:
            # A python that already has the upstream package: checked, not installed again.
            python = self.args.upstream_python
            done = subprocess.run([python, "-I", "-c", "import importlib.metadata as m; print(m.version('uv-ffi'))"],
                                  capture_output=True, text=True)
            if done.returncode != 0 or "uv-ffi==" + done.stdout.strip() != UPSTREAM:
                raise SystemExit("--upstream-python %s: wanted %s, found %r" % (python, UPSTREAM, done.stdout.strip() or done.stderr[-200:]))
            self.notes.append("upstream: %s" % UPSTREAM)
            return python
        venv = self.path("upstream-venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        python = os.path.join(venv, "bin", "python")
        done = subprocess.run([python, "-m", "pip", "install", "-q", UPSTREAM], capture_output=True, text=True)
        if done.returncode != 0:
            self.notes.append("upstream %s could not be installed: %s" % (UPSTREAM, done.stderr.strip()[-200:]))
            return None
        self.notes.append("upstream: %s" % UPSTREAM)
        return python

    def is_worker(self, tool: Tool) -> bool:
        return isinstance(tool, WorkerTool)

    def base(self, tool: Tool, venv: str) -> str:
        return "--python %s -i %s" % (os.path.join(venv, "bin", "python"), self.url)

    # Scenarios -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Untimed, for a run with ``--only`` that skips the swap stage: each tool's first call,
        the first swap version into its environment, as the swap stage leaves it."""
        for tool in self.tools:
            self.attempt("warm-up", tool.name, lambda t=tool: self.first_install(t))

    def first_install(self, tool: Tool) -> float:
        elapsed = tool.install("%s %s==%s" % (self.base(tool, tool.venv), SWAP, SWAP_VERSIONS[0]))
        expect(site_packages(tool.venv), {SWAP: SWAP_VERSIONS[0]})
        return elapsed

    def swap_and_noop(self) -> None:
        rounds = self.args.rounds
        current = {}
        for tool in self.tools:  # warm-up: first install, then one swap each way
            for version in (SWAP_VERSIONS[0], SWAP_VERSIONS[1], SWAP_VERSIONS[0]):
                self.attempt("warm-up", tool.name, lambda t=tool, v=version: t.install("%s %s==%s" % (self.base(t, t.venv), SWAP, v)))
            current[tool.name] = SWAP_VERSIONS[0]

        def step(tool: Tool, version: str) -> float:
            elapsed = tool.install("%s %s==%s" % (self.base(tool, tool.venv), SWAP, version))
            expect(site_packages(tool.venv), {SWAP: version})
            return elapsed

        floor = self.filesystem_floor()
        for _ in range(rounds):
            for tool in self.tools:
                version = SWAP_VERSIONS[1] if current[tool.name] == SWAP_VERSIONS[0] else SWAP_VERSIONS[0]
                self.attempt("warm swap", tool.name, lambda t=tool, v=version: step(t, v))
                current[tool.name] = version
            self.record("warm swap", "filesystem floor (hardlink)", floor())
        for _ in range(rounds):
            for tool in self.tools:
                # The first call after the other tools ran (caches cold, engine thread asleep).
                self.attempt(NOOP_FIRST, tool.name, lambda t=tool: step(t, current[t.name]))
                if isinstance(tool, WorkerTool):
                    # Then back-to-back calls, as a host swapping many times in a row makes them.
                    self.burst(tool, current[tool.name])
        for mode in LINK_MODES:
            self.swaps_in_link_mode(step, mode)

    def swaps_in_link_mode(self, step: Callable[[Tool, str], float], mode: str) -> None:
        """The same swap in one link mode (copy is the multi-version manager's default), beside
        uv's and the upstream package's same mode and the bare filesystem floor, round by round.
        The engine three ways, each in its own worker, environment and cache:

        - ``uv-ffi``: with its stash; every swap after the first two brings a version back from
          the stash (a stash hit);
        - ``uv-ffi (new version)``: with its stash, but the version installed is not in it: the
          stash is emptied (``uv_ffi.clear_stash``, untimed) right before each of its swaps, so
          the engine links the version as uv would, and the old one still goes to the stash;
        - ``uv-ffi (stash off)``: ``UV_FFI_STASH=0``, uv's uninstall and link.

        After each engine swap its environment's counters are checked: a stash hit restored one
        distribution, the other two none; with the stash on, the old version went to the stash.
        A swap that did otherwise fails its row (it would be timing something else)."""
        scenario = "warm swap, %s mode" % mode
        link = "--link-mode " + mode
        no_stash = dict(self.env_with_cache("engine-nostash-" + mode), UV_FFI_STASH="0")
        tools: List[Tool] = [
            WorkerTool("uv-ffi", link, sys.executable, self.env_with_cache("engine-" + mode)),
            WorkerTool(NEW_VERSION, link, sys.executable, self.env_with_cache("engine-new-" + mode)),
            WorkerTool("uv-ffi (stash off)", link, sys.executable, no_stash),
        ]
        uv = find_uv()
        if uv:
            tools.append(CommandTool("uv pip (%s)" % mode, link, [uv, "pip"], self.env_with_cache("uv-" + mode)))
        if self.upstream_python:
            tools.append(WorkerTool("upstream (%s)" % mode, link, self.upstream_python, self.env_with_cache("up-" + mode)))
        for tool in tools:
            tool.venv = make_venv(self.path("venv-%s-%s" % (mode, tool.name.replace(" ", "_").replace("(", "").replace(")", ""))))
            for version in (SWAP_VERSIONS[0], SWAP_VERSIONS[1]):  # warm-up: install, swap once
                self.attempt("warm-up", tool.name, lambda t=tool, v=version: step(t, v))
        # What each engine swap must add to its environment's (restored, stashed) counters.
        wanted = {"uv-ffi": (1, 1), NEW_VERSION: (0, 1), "uv-ffi (stash off)": (0, 0)}
        counts: Dict[str, tuple] = {}
        for tool in tools:
            if tool.name in wanted:
                try:
                    counts[tool.name] = self.stash_counts(tool)
                except Failure as exc:
                    self.failures.setdefault(scenario, {})[tool.name] = "counters after the warm-up: %s" % exc

        def checked_step(tool: Tool, version: str) -> float:
            python = os.path.join(tool.venv, "bin", "python")
            if tool.name == NEW_VERSION:
                # Untimed: the version about to be installed (stashed two swaps ago) leaves the stash.
                if not tool.worker.call({"op": "clear_stash", "python": python})["cleared"]:
                    raise Failure("no stash to clear before the swap (the swap before stashed nothing)")
            elapsed = step(tool, version)
            if tool.worker.last_phases:
                # The engine's own account of this swap, for the table of phases.
                for phase, us in tool.worker.last_phases.items():
                    self.phases.setdefault("%s, %s" % (scenario, tool.name), {}).setdefault(phase, []).append(us)
            now = self.stash_counts(tool)
            before, counts[tool.name] = counts[tool.name], now
            got = (now[0] - before[0], now[1] - before[1])
            if got != wanted[tool.name]:
                raise Failure("the swap to %s restored %d and stashed %d distribution(s); this row wants %d and %d" % (
                    version, got[0], got[1], wanted[tool.name][0], wanted[tool.name][1]))
            return elapsed

        floor = self.filesystem_floor(mode)
        current = SWAP_VERSIONS[1]
        try:
            for _ in range(self.args.rounds):
                current = SWAP_VERSIONS[1] if current == SWAP_VERSIONS[0] else SWAP_VERSIONS[0]
                for tool in tools:
                    action = checked_step if tool.name in wanted else step
                    self.attempt(scenario, tool.name, lambda t=tool, v=current, a=action: a(t, v))
                self.record(scenario, "filesystem floor (%s)" % mode, floor())
        finally:
            for tool in tools:
                tool.close()
        for tool, failure in self.failures.get(scenario, {}).items():
            print("FAILED: %s, %s: %s" % (scenario, tool, failure), file=sys.stderr)

    def stash_counts(self, tool: "WorkerTool") -> tuple:
        """The engine's ``restored`` and ``stashed`` counters of the tool's environment."""
        python = os.path.join(tool.venv, "bin", "python")
        counters = tool.worker.call({"op": "counters", "python": python})["counters"]
        if "restored" not in counters or "stashed" not in counters:
            raise Failure("the engine reports no stash counters: %s" % sorted(counters))
        return counters["restored"], counters["stashed"]

    def burst(self, tool: "WorkerTool", version: str, calls: int = 20) -> None:
        name = "warm no-op, back-to-back calls"
        if tool.name in self.failures.get(name, {}):
            return
        cmd = "pip install %s %s %s==%s" % (tool.link_args, self.base(tool, tool.venv), SWAP, version)
        reply = tool.worker.call({"op": "run_repeat", "cmd": cmd, "n": calls})
        try:
            if reply["rc"] != 0:
                raise Failure("exit code %s: %s" % (reply["rc"], reply["error"][:300]))
            expect(site_packages(tool.venv), {SWAP: version})
        except Failure as exc:
            self.failures.setdefault(name, {})[tool.name] = str(exc)
            return
        for ms in reply["ms"]:
            self.record(name, tool.name, ms)

    def filesystem_floor(self, mode: str = "hardlink") -> Callable[[], float]:
        """The swap's unlinks and hardlinks (or copies, with content and permission bits as uv's
        copy mode makes them, or symlinks) done with plain system calls: what no installer that
        deletes and re-creates the files beats.

        Returns a function doing one timed swap, so that the floor is measured in the same
        rounds as the tools, under the same conditions.
        """
        sources = {}
        for version in SWAP_VERSIONS:
            folder = tempfile.mkdtemp(prefix="floor-src-%s-%s-" % (mode, version), dir=self.work)
            wheel = os.path.join(self.path("wheels"), "bench_swap-%s-py3-none-any.whl" % version)
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(folder)
            files = []
            for root, _, names in os.walk(folder):
                for name in names:
                    files.append(os.path.relpath(os.path.join(root, name), folder))
            dirs = sorted({os.path.dirname(f) for f in files if os.path.dirname(f)})
            sources[version] = (folder, files, dirs)
        target = tempfile.mkdtemp(prefix="floor-target-%s-" % mode, dir=self.work)
        link = {"hardlink": os.link, "copy": shutil.copy, "symlink": os.symlink}[mode]

        def place(version: str) -> None:
            folder, files, dirs = sources[version]
            for d in dirs:
                os.mkdir(os.path.join(target, d))
            for f in files:
                link(os.path.join(folder, f), os.path.join(target, f))

        def remove(version: str) -> None:
            _, files, dirs = sources[version]
            for f in files:
                os.unlink(os.path.join(target, f))
            for d in sorted(dirs, key=len, reverse=True):
                os.rmdir(os.path.join(target, d))

        place(SWAP_VERSIONS[0])
        state = {"current": SWAP_VERSIONS[0]}
        self.notes.append("filesystem floor (%s): %d files unlinked and %d %s per swap" % (
            mode, len(sources[SWAP_VERSIONS[0]][1]), len(sources[SWAP_VERSIONS[1]][1]),
            {"hardlink": "hardlinked", "copy": "copied (shutil.copy)", "symlink": "symlinked"}[mode]))

        def swap() -> float:
            new = SWAP_VERSIONS[1] if state["current"] == SWAP_VERSIONS[0] else SWAP_VERSIONS[0]
            start = time.perf_counter()
            remove(state["current"])
            place(new)
            elapsed = (time.perf_counter() - start) * 1000.0
            state["current"] = new
            return elapsed

        return swap

    def callbacks(self) -> None:
        """The engine's swap and no-op with a progress callback and with a plan callback (that
        lets the plan through), beside the same calls without one, all back to back."""
        worker = self.engine.worker
        base = "pip install %s %s %s==" % (self.engine.link_args, self.base(self.engine, self.engine.venv), SWAP)
        current = dist_infos(site_packages(self.engine.venv))[SWAP]
        for _ in range(self.args.rounds):
            for flag in ("", "progress", "plan"):
                new = SWAP_VERSIONS[1] if current == SWAP_VERSIONS[0] else SWAP_VERSIONS[0]

                def swap(new=new, flag=flag) -> float:
                    elapsed = worker.run(base + new, **({flag: True} if flag else {}))
                    expect(site_packages(self.engine.venv), {SWAP: new})
                    return elapsed

                scenario = "warm swap, %s callback" % flag if flag else "warm swap, back-to-back, no callback"
                self.attempt(scenario, "uv-ffi", swap)
                current = new
            self.attempt("warm no-op, progress callback", "uv-ffi", lambda: worker.run(base + current, progress=True))

    def read_commands(self) -> None:
        """`pip list` through the engine (uv's command line, in-process) and as a `uv` process."""
        uv = find_uv()
        python = os.path.join(self.engine.venv, "bin", "python")
        for _ in range(self.args.rounds):
            reply = self.engine.worker.call({"op": "read", "cmd": "pip list --python %s" % python})

            def engine(reply=reply) -> float:
                if SWAP not in reply["stdout"]:
                    raise Failure("pip list did not list %s: %r" % (SWAP, reply["stdout"][:200]))
                return reply["ms"]

            self.attempt("pip list", "uv-ffi", engine)
            if uv:
                def command() -> float:
                    start = time.perf_counter()
                    done = subprocess.run([uv, "pip", "list", "--python", python], capture_output=True,
                                          text=True, env=self.env_with_cache("uv"))
                    elapsed = (time.perf_counter() - start) * 1000.0
                    if done.returncode != 0 or SWAP not in done.stdout:
                        raise Failure("uv pip list: exit %s %r" % (done.returncode, done.stdout[:200]))
                    return elapsed

                self.attempt("pip list", "uv pip (default link)", command)

    def target_installs(self) -> None:
        for i in range(self.args.rounds):
            for tool in self.tools:
                if not self.is_worker(tool) and "uv pip" not in tool.name:
                    continue
                target = self.path("targets", "%s-%d" % (tool.name.replace(" ", "_"), i))

                def action(t=tool, target=target) -> float:
                    elapsed = t.install("%s --target %s bench-app==1.0.0" % (self.base(t, t.venv), target))
                    expect(target, {"bench-app": "1.0.0", SUITE[0]: "1.0.0", SUITE[2]: "1.0.0"})
                    return elapsed

                self.attempt("--target into a new folder", tool.name, action)

    def suite_installs(self) -> None:
        """Each round, the 15 packages into a new environment, by each tool's long-lived process
        (round -1, untimed, warms each tool's wheel cache).

        A long-lived process must follow each call's ``--python``. When the new environment is
        missing packages that turn up in the environment the tool's process worked on before
        (``tool.venv``), the failure says so, with what the tool reported, and those packages
        are taken out of ``tool.venv`` after the stage (by the tool itself), so that the later
        stages find that environment as it was."""
        wanted = {name: "1.0.0" for name in SUITE}
        before = {tool.name: set(dist_infos(site_packages(tool.venv))) for tool in self.tools if self.is_worker(tool)}
        for i in range(-1, self.args.rounds):  # round -1 warms each tool's wheel cache
            for tool in self.tools:
                if not self.is_worker(tool) and "uv pip" not in tool.name:
                    continue
                venv = make_venv(self.path("suite", "%s-%d" % (tool.name.replace(" ", "_"), i)))

                def action(t=tool, venv=venv) -> float:
                    elapsed = t.install("%s %s" % (self.base(t, venv), " ".join(SUITE)))
                    try:
                        expect(site_packages(venv), wanted)
                    except Failure as exc:
                        raise Failure(self.misplaced(t, venv, wanted) or str(exc))
                    return elapsed

                self.attempt(SUITE_SCENARIO if i >= 0 else "warm-up", tool.name, action)
        for tool in self.tools:
            if tool.name in before:
                self.remove_strays(tool, before[tool.name])

    def misplaced(self, tool: Tool, venv: str, wanted: Dict[str, str]) -> Optional[str]:
        """If what a worker tool was asked to put into ``venv`` is in its earlier environment
        instead, say so (for the table) and why (for the notes); ``None`` otherwise."""
        if not isinstance(tool, WorkerTool) or tool.venv == venv:
            return None
        elsewhere = dist_infos(site_packages(tool.venv))
        found = [n for n, v in wanted.items() if elsewhere.get(n) == v]
        here = dist_infos(site_packages(venv))
        if not found:
            return None
        reply = tool.worker.last_reply
        reported = len(reply.get("installed") or [])
        if reported:
            # The call that put them there (the warm-up round): what it returned, what is on disk.
            self.notes.append(
                "%s fails \"%s\": its long-lived process ignores the `--python` of a call after "
                "its first (asked for the %d packages in a new environment, it returned exit code %s "
                "and reported %d installed, but they were written into the environment of its "
                "first call, and the new one held %d of them)" % (
                    tool.name.split(" (")[0], SUITE_SCENARIO, len(wanted), reply.get("rc"), reported,
                    sum(1 for n, v in wanted.items() if here.get(n) == v)))
        return "exit code %s, %d reported installed, %d of %d in the new env; %d of them in %s, the process's first env" % (
            reply.get("rc"), reported, sum(1 for n, v in wanted.items() if here.get(n) == v), len(wanted),
            len(found), os.path.relpath(tool.venv, self.work))

    def remove_strays(self, tool: "WorkerTool", before: set) -> None:
        """Take out of ``tool.venv`` what a stage left there by mistake, through the tool itself,
        check it on disk, and drop the tool's kept view of the environment (the upstream
        package's uninstall leaves its view listing what it removed)."""
        strays = sorted(set(dist_infos(site_packages(tool.venv))) - before)
        if not strays:
            return
        python = os.path.join(tool.venv, "bin", "python")
        try:
            tool.worker.run("pip uninstall --python %s %s" % (python, " ".join(strays)))
        except Failure as exc:
            self.notes.append("%s: could not take %s out of its environment: %s" % (tool.name, ", ".join(strays), exc))
            return
        tool.worker.call({"op": "invalidate"})
        left = sorted(set(dist_infos(site_packages(tool.venv))) - before)
        if left:
            self.notes.append("%s: %s still in its environment after the stage" % (tool.name, ", ".join(left)))

    def cold_starts(self) -> None:
        """A new process doing one install, counted three ways, each install checked on disk.

        For the engine and the upstream package, a new ``python -I -c`` process imports
        ``uv_ffi`` and runs one ``pip install`` into a new environment. The child times itself
        with ``time.perf_counter()`` from just before ``import uv_ffi`` to just after the first
        ``uv_ffi.run`` returns, and prints that figure: the row "cold start: import + first
        install, in a new process" (interpreter start excluded), beside one ``uv pip install``
        process doing the same install, timed whole. The same child timed whole by this process
        is the row "cold start: whole new process" (beside the same ``uv pip`` processes), and
        the interpreter alone (the same python, ``-I -c pass``, same environment variables and
        working folder) the row "interpreter start (python -I -c pass)".
        """
        code = (
            "import sys, time\n"
            "start = time.perf_counter()\n"
            "import uv_ffi\n"
            "rc = uv_ffi.run(sys.argv[1])[0]\n"
            "elapsed = (time.perf_counter() - start) * 1000.0\n"
            "sys.stdout.write('\\n%s%r\\n' % (sys.argv[2], elapsed))\n"
            "sys.exit(rc)\n"
        )
        marker = "uv-ffi-bench-cold-ms="
        for i in range(self.args.rounds):
            for tool in self.tools:
                if not isinstance(tool, WorkerTool) and "uv pip" not in tool.name:
                    continue
                venv = make_venv(self.path("cold", "%s-%d" % (tool.name.replace(" ", "_"), i)))
                args = "%s %s==%s" % (self.base(tool, venv), SWAP, SWAP_VERSIONS[0])
                if isinstance(tool, WorkerTool):
                    python = tool.worker.process.args[0]
                    env = self.env_with_cache("engine" if tool is self.engine else ("up-hard" if "hard" in tool.name else "up"))

                    def interpreter(python=python, env=env) -> float:
                        start = time.perf_counter()
                        done = subprocess.run([python, "-I", "-c", "pass"], env=env, capture_output=True,
                                              text=True, cwd=self.work)
                        elapsed = (time.perf_counter() - start) * 1000.0
                        if done.returncode != 0:
                            raise Failure("exit code %s: %s" % (done.returncode, done.stderr[-300:]))
                        return elapsed

                    def child(python=python, env=env, cmd="pip install %s %s" % (tool.link_args, args),
                              venv=venv) -> Dict[str, float]:
                        start = time.perf_counter()
                        done = subprocess.run([python, "-I", "-c", code, cmd, marker], env=env,
                                              capture_output=True, text=True, cwd=self.work)
                        whole = (time.perf_counter() - start) * 1000.0
                        if done.returncode != 0:
                            raise Failure("exit code %s: %s" % (done.returncode, done.stderr[-300:]))
                        expect(site_packages(venv), {SWAP: SWAP_VERSIONS[0]})
                        printed = [line for line in done.stdout.splitlines() if line.startswith(marker)]
                        if not printed:
                            raise Failure("the new process printed no time: %r" % done.stdout[-200:])
                        return {COLD_INNER: float(printed[-1][len(marker):]), COLD_WHOLE: whole}

                    self.attempt(COLD_PYTHON, tool.name, interpreter)
                else:
                    def child(t=tool, args=args, venv=venv) -> Dict[str, float]:
                        elapsed = t.install(args)
                        expect(site_packages(venv), {SWAP: SWAP_VERSIONS[0]})
                        # One `uv pip install` process, timed whole, in both rows it is compared in.
                        return {COLD_INNER: elapsed, COLD_WHOLE: elapsed}

                self.attempt_many((COLD_INNER, COLD_WHOLE), tool.name, child)

    def views(self) -> None:
        repeat = 200
        for tool in self.tools:
            if not self.is_worker(tool):
                continue
            worker = tool.worker
            # The views belong to the environment of the tool's last call.
            worker.run("pip install %s %s %s==%s" % (tool.link_args, self.base(tool, tool.venv), SWAP, SWAP_VERSIONS[0]))
            view = worker.call({"op": "view", "repeat": repeat})
            if tool is self.engine:
                for us in view["us"]:
                    self.record("view read, validate check (us)", tool.name, us)
            else:
                for us in view["us"]:
                    self.record("view read, no check (us)", tool.name, us)
            patch = worker.call({"op": "patch", "installed": [[SWAP, SWAP_VERSIONS[0]]], "repeat": repeat})
            for us in patch["us"]:
                self.record("view patch (us)", tool.name, us)
            for _ in range(self.args.rounds):
                worker.call({"op": "invalidate"})
                if tool is self.engine:
                    reread = worker.call({"op": "view"})
                    self.record("view rescan (us)", tool.name, reread["us"][0])
                    worker.call({"op": "invalidate"})
                self.attempt(
                    "no-op after invalidate (forced rescan)", tool.name,
                    lambda t=tool: t.install("%s %s==%s" % (self.base(t, t.venv), SWAP, SWAP_VERSIONS[0])),
                )

    def process_facts(self) -> None:
        for tool in self.tools:
            if not self.is_worker(tool):
                continue
            self.record("import (ms)", tool.name, tool.worker.hello["import_ms"])
            rss = tool.worker.call({"op": "rss"})
            self.record("resident memory after warm-up (MiB)", tool.name, rss["kib"] / 1024.0)
            largest = sorted(rss["by_mapping"].items(), key=lambda item: -item[1])[:5]
            self.notes.append("resident memory of %s by mapping: %s; %d threads%s" % (
                tool.name, ", ".join("%s %.1f MiB" % (name, kib / 1024.0) for name, kib in largest),
                rss.get("threads", 0), "; anonymous mappings over 256 KiB (KiB): %s" % rss["anon"] if "anon" in rss else ""))
        for python, name in [(sys.executable, "uv-ffi"), (self.upstream_python, "upstream (default link)")]:
            if not python:
                continue
            for _ in range(self.args.rounds):
                out = subprocess.run(
                    [python, "-I", "-c", "import time; t = time.perf_counter(); import uv_ffi; print((time.perf_counter() - t) * 1000)"],
                    capture_output=True, text=True, cwd=self.work,
                )
                if out.returncode == 0:
                    self.record("import in a new process (ms)", name, float(out.stdout.strip()))

    def profile(self) -> str:
        """One engine swap with UV_FFI_PROFILE=1, to show where the time goes."""
        env = self.env_with_cache("engine")
        env["UV_FFI_PROFILE"] = "1"
        venv = self.path("venv-uv-ffi")
        code = (
            "import sys, uv_ffi\n"
            "for v in sys.argv[2:]:\n"
            "    uv_ffi.run(sys.argv[1] + ' %s==' + v)\n" % SWAP
        )
        base = "pip install --link-mode hardlink %s" % self.base(self.engine, venv)
        done = subprocess.run([sys.executable, "-c", code, base, "1.1.0", "1.0.0", "1.1.0", "1.0.0", "1.0.0"],
                              env=env, capture_output=True, text=True)
        return done.stderr.strip()

    # Report ----------------------------------------------------------------------------------

    def report(self) -> str:
        order = [
            NOOP_FIRST, "warm no-op, back-to-back calls", "warm swap",
            "warm swap, hardlink mode", "warm swap, copy mode", "warm swap, symlink mode",
            "warm swap, back-to-back, no callback",
            "warm swap, progress callback",
            "warm swap, plan callback", "warm no-op, progress callback", "pip list",
            COLD_INNER, COLD_WHOLE, COLD_PYTHON,
            "--target into a new folder", SUITE_SCENARIO,
            "no-op after invalidate (forced rescan)", "view rescan (us)", "view read, validate check (us)",
            "view read, no check (us)", "view patch (us)", "import (ms)", "import in a new process (ms)",
            "resident memory after warm-up (MiB)",
        ]
        lines = ["| scenario | tool | median | min | max | ratio to uv-ffi |", "|:--|:--|--:|--:|--:|--:|"]
        for scenario in order:
            tools = self.results.get(scenario, {})
            failures = self.failures.get(scenario, {})
            base = statistics.median(tools["uv-ffi"]) if "uv-ffi" in tools else None
            unit = "MiB" if "MiB" in scenario else ("us" if "(us)" in scenario else "ms")
            for tool in sorted(set(tools) | set(failures), key=lambda n: (n != "uv-ffi", n)):
                if tool in failures:
                    lines.append("| %s | %s | **FAILED**: %s | | | |" % (scenario, tool, failures[tool].replace("|", "/")[:160]))
                    continue
                values = tools[tool]
                median = statistics.median(values)
                ratio = "%.2fx" % (median / base) if base and tool != "uv-ffi" else ""
                lines.append("| %s | %s | %s | %s | %s | %s |" % (
                    scenario, tool, fmt(median, unit), fmt(min(values), unit), fmt(max(values), unit), ratio))
        return "\n".join(lines)

    def link_mode_summary(self) -> List[str]:
        """Per link mode, the engine's swaps against the bare filesystem floor of that mode (the
        medians of the table): a version not in the stash, and a swap back from the stash (also
        against the hardlink floor). Empty when the swap stage did not run."""
        scenarios = {mode: "warm swap, %s mode" % mode for mode in LINK_MODES}
        if not any(self.results.get(s) for s in scenarios.values()):
            return []

        def median(mode: str, tool: str) -> Optional[float]:
            values = self.results.get(scenarios[mode], {}).get(tool)
            failed = tool in self.failures.get(scenarios[mode], {})
            return statistics.median(values) if values and not failed else None

        def cell(value: Optional[float]) -> str:
            return fmt(value, "ms") if value is not None else "**FAILED**"

        def ratio(value: Optional[float], floor: Optional[float]) -> str:
            return "%.2fx" % (value / floor) if value is not None and floor else ""

        hard_floor = median("hardlink", "filesystem floor (hardlink)")
        lines = [
            "Swaps per link mode against the bare filesystem floor of the same mode (medians of the "
            "rows above; goals: a version not in the stash within 1.3x its floor, a swap back from "
            "the stash within 0.25x the hardlink floor):",
            "",
            "| link mode | filesystem floor | uv-ffi (new version) | new version / floor (goal <= 1.3x) "
            "| uv-ffi (stash hit) | stash hit / hardlink floor (goal <= 0.25x) |",
            "|:--|--:|--:|--:|--:|--:|",
        ]
        for mode in LINK_MODES:
            if not self.results.get(scenarios[mode]) and not self.failures.get(scenarios[mode]):
                continue
            floor = median(mode, "filesystem floor (%s)" % mode)
            new, hit = median(mode, NEW_VERSION), median(mode, "uv-ffi")
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                mode, cell(floor), cell(new), ratio(new, floor), cell(hit), ratio(hit, hard_floor)))
        return lines

    def phase_report(self) -> str:
        """Median microseconds per engine phase, for the scenarios timed through the worker."""
        lines = ["| scenario | engine phases, median us (from the replies' `timings_us`) |", "|:--|:--|"]
        for scenario, phases in self.phases.items():
            if scenario == "warm-up":
                continue
            parts = ["%s %.0f" % (name, statistics.median(values)) for name, values in phases.items()]
            lines.append("| %s | %s |" % (scenario, ", ".join(parts)))
        return "\n".join(lines)

    def close(self) -> None:
        for tool in self.tools:
            tool.close()
        shutil.rmtree(self.work, ignore_errors=True)


def update_readme(text: str) -> None:
    """Replace what stands between the benchmark markers in README.md."""
    path = os.path.join(os.path.dirname(HERE), "README.md")
    with open(path, encoding="utf-8") as handle:
        readme = handle.read()
    start, end = readme.index(README_START) + len(README_START), readme.index(README_END)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(readme[:start] + "\n" + text + "\n" + readme[end:])


def filesystem_type(path: str) -> str:
    done = subprocess.run(["df", "--output=fstype", path], capture_output=True, text=True)
    lines = done.stdout.split()
    return lines[-1] if done.returncode == 0 and len(lines) > 1 else "unknown"


def fmt(value: float, unit: str) -> str:
    if unit == "us":
        return "%.1f us" % value
    if unit == "MiB":
        return "%.1f MiB" % value
    return "%.3f ms" % value if value < 10 else "%.1f ms" % value


def large_graph_stage(rounds: int, work: str) -> List[str]:
    """The large-resolution scenario: its own generated index and tools (see large_graph.py)."""
    import large_graph  # here, not at the top: it imports this module's Worker

    print("running large_graph", file=sys.stderr)
    return ["", large_graph.measure(rounds, work)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per scenario (default 15)")
    parser.add_argument("--swap-files", type=int, default=100, help="files in the swapped package (default 100)")
    parser.add_argument("--wheels", help="serve this folder of real wheels too (added to the index)")
    parser.add_argument("--out", help="Markdown output (default benchmarks/results.md; none with --only)")
    parser.add_argument("--skip-upstream", action="store_true", help="do not install the upstream package")
    parser.add_argument("--skip-pip", action="store_true", help="do not time pip")
    parser.add_argument("--upstream-python", help="a python that already has %s (instead of installing "
                        "it into a new virtual environment)" % UPSTREAM)
    parser.add_argument("--readme", action="store_true", help="also replace the Performance section of README.md")
    parser.add_argument("--no-large-graph", action="store_true", help="skip the large-resolution stage")
    parser.add_argument("--only", help="run only these stages, comma-separated, of: %s, large (a partial "
                        "run writes no file unless --out is given)" % ", ".join(STAGES))
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    if only is not None:
        unknown = only - set(STAGES) - {"large"}
        if unknown:
            parser.error("unknown stage(s) for --only: %s" % ", ".join(sorted(unknown)))
        if args.readme:
            parser.error("--readme takes a full run, not --only")
        args.no_large_graph = args.no_large_graph or "large" not in only
    elif args.out is None:
        args.out = os.path.join(HERE, "results.md")

    bench = Bench(args)
    try:
        wheels = build_packages(bench.path("wheels"), args.swap_files)
        if args.wheels:
            wheels += [os.path.join(args.wheels, w) for w in os.listdir(args.wheels) if w.endswith(".whl")]
        sample_index.write_simple_index(bench.path("index"), wheels)
        with sample_index.StaticIndex(bench.path("index")) as index:
            bench.url = index.url
            bench.start_tools()
            print("tools:", ", ".join(t.name for t in bench.tools), file=sys.stderr)
            if only is not None and "swap" not in only:
                bench.prepare()  # what the later stages expect the swap stage to have left
            for name, method in STAGES.items():
                if only is None or name in only:
                    stage = getattr(bench, method)
                    print("running", stage.__name__, file=sys.stderr)
                    stage()
            profile = bench.profile()
        large = [] if args.no_large_graph else large_graph_stage(args.rounds, bench.path("large-graph"))
        table = bench.report()
        summary = bench.link_mode_summary()
        machine = "%d cores, Linux, Python %s, %s filesystem" % (os.cpu_count() or 0, sys.version.split()[0], filesystem_type(bench.work))
        text = "\n".join([
            "Measured with `python benchmarks/compare.py --rounds %d%s` (%s); medians of one run." % (
                args.rounds, " --only %s" % args.only if args.only else "", machine),
            "Index: generated wheels served on 127.0.0.1 (`Cache-Control: max-age=600`, as PyPI). "
            "The swapped package has %d files." % args.swap_files,
            "",
            table,
            "",
        ] + ([*summary, ""] if summary else []) + [
            "Notes: " + "; ".join(dict.fromkeys(bench.notes)) + ".",
            "",
            "Where the engine's time goes, measured inside the rounds above:",
            "",
            bench.phase_report(),
            "",
            "A sequential trace of warm swaps and a no-op, as `UV_FFI_PROFILE=1` prints it:",
            "",
            "```",
            profile,
            "```",
        ] + large)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        if args.readme:
            update_readme(text)
        print(text)
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
