"""Large-resolution benchmark: a generated graph of 320 distributions that forces backtracking.

    python benchmarks/large_graph.py [--rounds 5]

The graph (fixed seed, so every run resolves the same question) is served as a PEP 503 index on
127.0.0.1 with PEP 658 metadata files, as real indexes serve them. ``lg-root`` pulls in every
``lg-pNNN`` distribution. The newest versions of some of them ("traps") require a range of
another distribution that an unconditional requirement elsewhere rules out, directly or through
a second distribution, so the resolver must reject those candidates and choose older ones.

Timed, tools alternating round by round, all as dry runs into an empty environment:

- ``uv pip install --dry-run``: the pinned ``uv`` command as a subprocess;
- the engine in a new process (``benchmarks/worker.py``): its first call, and separately the
  process start and ``import uv_ffi``;
- the engine warm in one long-lived worker, asked a different question each round (the root plus
  a pin on one more distribution) so that no earlier resolution can be reused;
- the same worker asked the same question again (the engine reuses its resolution).

Every tool's cache is warmed by one untimed run first, so all read HTTP-cached pages and
metadata. Every answer is checked against the resolution uv gave for the same question; a wrong
answer is a failure, not a time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Set, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from uv_ffi import sample_index  # noqa: E402
from uv_ffi.demo import find_uv  # noqa: E402
from compare import Failure, Worker, fmt  # noqa: E402

SEED = 1005
PACKAGES = 320
VERSIONS = ["1.%d" % minor for minor in range(12)]
ROOT = "lg-root"
HEADS = 8  # distributions the root requires directly; the rest hang below them
SPAN = 30  # a distribution requires others among the next SPAN ones (a DAG, no cycles)
ANCHOR = 5  # minor version an unconditional requirement on an anchored distribution asks for
TRAP_FROM = 9  # a trap's versions 1.9 and newer require its anchored target below 1.3
CHAIN_FROM = 10  # a chained trap's versions 1.10 and newer require a trap at 1.10 or newer
ANCHORED = 45  # distributions some trap's newest versions rule out
CHAINED = 20  # traps that another distribution's newest versions require at their newest

Resolution = Dict[str, str]


def name(index: int) -> str:
    return "lg-p%03d" % index


@dataclass
class Graph:
    """Requirements of every (distribution, version), and what the generator made of them."""

    requires: Dict[Tuple[str, str], List[str]] = field(default_factory=dict)
    traps: Set[str] = field(default_factory=set)
    chained: Set[str] = field(default_factory=set)
    #: Distributions no trap involves, which any version from 1.ANCHOR up can be pinned to.
    pinnable: List[str] = field(default_factory=list)

    def newest_allowed(self) -> Resolution:
        """What a resolver must find: every distribution at its newest version, except traps
        (newest before TRAP_FROM) and chained traps (newest before CHAIN_FROM, or before
        TRAP_FROM if they are traps too)."""
        found = {}
        for dist, _ in self.requires:
            minor = len(VERSIONS) - 1
            if dist in self.chained:
                minor = CHAIN_FROM - 1
            if dist in self.traps:
                minor = TRAP_FROM - 1
            found[dist] = VERSIONS[minor]
        return found


def generate(seed: int = SEED) -> Graph:
    rng = random.Random(seed)
    edges, parent = random_edges(rng)
    anchored = rng.sample(range(HEADS + SPAN, PACKAGES), ANCHORED)
    for j in anchored:
        edges[parent[j]][j] = ANCHOR
    # A trap comes before its target (so it is often chosen first and must be taken back) and is
    # not the target's parent (whose every version asks for the anchored range).
    traps = {j: rng.choice([t for t in range(j - SPAN, j) if t != parent[j]]) for j in anchored}
    chained = {rng.randrange(max(0, t - SPAN), t): t for t in rng.sample(sorted(set(traps.values())), CHAINED)}
    graph = Graph(traps={name(t) for t in traps.values()}, chained={name(c) for c in chained})
    involved = set(traps.values()) | set(chained) | set(anchored)
    graph.pinnable = [name(i) for i in range(HEADS, PACKAGES) if i not in involved]
    for i in range(PACKAGES):
        for minor, version in enumerate(VERSIONS):
            graph.requires[(name(i), version)] = requirements(i, minor, edges[i], traps, chained)
    for version in VERSIONS:
        graph.requires[(ROOT, version)] = [name(i) for i in range(HEADS)]
    return graph


def random_edges(rng: random.Random) -> Tuple[Dict[int, Dict[int, int]], Dict[int, int]]:
    """Who requires whom, with a lower bound's minor version: ``{i: {j: minor}}``, and the
    parent that makes each distribution past the heads reachable from the root."""
    edges: Dict[int, Dict[int, int]] = {i: {} for i in range(PACKAGES)}
    parent = {}
    for j in range(HEADS, PACKAGES):
        parent[j] = rng.randrange(max(0, j - SPAN), j)
        edges[parent[j]][j] = rng.randrange(3)
    for i in range(PACKAGES - 1):
        for j in rng.sample(range(i + 1, min(PACKAGES, i + SPAN + 1)), min(3, PACKAGES - i - 1)):
            edges[i].setdefault(j, rng.randrange(3))
    return edges, parent


def requirements(i: int, minor: int, edges: Dict[int, int], traps: Dict[int, int],
                 chained: Dict[int, int]) -> List[str]:
    """Version 1.<minor> of distribution i: its edges, plus the trap and chain ranges if newest."""
    # Newer versions raise their lower bounds a little, as real projects do; anchors stay put.
    bump = 2 if minor >= 6 else 0
    reqs = ["%s>=1.%d" % (name(j), low if low == ANCHOR else low + bump) for j, low in sorted(edges.items())]
    if minor >= TRAP_FROM:
        reqs += ["%s<1.3" % name(j) for j, t in sorted(traps.items()) if t == i]
    if minor >= CHAIN_FROM and i in chained:
        reqs.append("%s>=1.%d" % (name(chained[i]), CHAIN_FROM))
    return reqs


# --- the index -------------------------------------------------------------------------------


def build_index(graph: Graph, root: str) -> None:
    """Wheels, PEP 503 pages (sample_index's) and PEP 658 metadata for them."""
    files = os.path.join(root, "files")
    wheels = [sample_index.build_wheel(files, dist, version, reqs)
              for (dist, version), reqs in graph.requires.items()]
    sample_index.write_simple_index(root, wheels)
    add_core_metadata(root)


LINK = re.compile(r'<a href="\.\./\.\./files/([^"#]+)#')


def add_core_metadata(root: str) -> None:
    """Serve each wheel's METADATA next to it as ``<wheel>.metadata`` and announce it on the
    pages (PEP 658 / 714), as PyPI does: resolvers then read metadata without the wheel."""
    simple = os.path.join(root, "simple")
    for project in os.listdir(simple):
        page = os.path.join(simple, project, "index.html")
        if not os.path.isfile(page):
            continue
        with open(page, encoding="utf-8") as handle:
            text = handle.read()
        with open(page, "w", encoding="utf-8") as handle:
            handle.write(LINK.sub(lambda m: announce(root, m), text))


def announce(root: str, match: "re.Match[str]") -> str:
    wheel = os.path.join(root, "files", match.group(1))
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        data = archive.read(member)
    with open(wheel + ".metadata", "wb") as handle:
        handle.write(data)
    digest = "sha256=" + hashlib.sha256(data).hexdigest()
    return '<a data-dist-info-metadata="%s" data-core-metadata="%s" %s' % (digest, digest, match.group(0)[3:])


# --- the tools -------------------------------------------------------------------------------

NEW_PROCESS = "resolve in a new process"
UV = (NEW_PROCESS, "uv pip install --dry-run")
FRESH_TOTAL = (NEW_PROCESS, "uv-ffi: start + import + first call")
FRESH_START = (NEW_PROCESS, "uv-ffi: start + import")
FRESH_CALL = (NEW_PROCESS, "uv-ffi: first call")
WARM_NEW = ("resolve warm, a different question each round", "uv-ffi (long-lived process)")
WARM_SAME = ("resolve warm, the same question again", "uv-ffi (resolution reused)")
ORDER = [UV, FRESH_TOTAL, FRESH_START, FRESH_CALL, WARM_NEW, WARM_SAME]
Row = Tuple[str, str]


def tool_env(work: str, cache: str) -> Dict[str, str]:
    env = dict(os.environ, UV_CACHE_DIR=os.path.join(work, "cache-" + cache))
    # Workers import the same uv_ffi as this process (this checkout), whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(HERE), env.get("PYTHONPATH")]))
    env.pop("UV_FFI_PROFILE", None)  # its trace on stderr would be timed too
    return env


class Uv:
    """The pinned ``uv`` command, one process per question."""

    def __init__(self, work: str, url: str, python: str) -> None:
        self.binary = find_uv()
        if not self.binary:
            raise Failure("no uv command found (uv_ffi.demo.find_uv)")
        self.env = tool_env(work, "uv")
        self.args = ["pip", "install", "--dry-run", "--python", python, "-i", url]

    def resolve(self, requirements: List[str], *extra: str) -> Tuple[float, Resolution, str]:
        start = time.perf_counter()
        done = subprocess.run([self.binary] + self.args + list(extra) + requirements,
                              env=self.env, capture_output=True, text=True)
        elapsed = (time.perf_counter() - start) * 1000.0
        if done.returncode != 0:
            raise Failure("uv exit code %s: %s" % (done.returncode, done.stderr[-300:]))
        # A dry run lists what it would install on stderr, one ` + name==version` a line.
        pins = dict(line[3:].split("==", 1) for line in done.stderr.splitlines() if line.startswith(" + "))
        return elapsed, pins, done.stderr


def engine_resolve(worker: Worker, command: str, requirements: List[str]) -> Tuple[float, Resolution]:
    reply = worker.call({"op": "run", "cmd": command + " " + " ".join(requirements)})
    if reply["rc"] != 0:
        raise Failure("exit code %s: %s" % (reply["rc"], reply["error"][:300]))
    return reply["ms"], {n: v for n, v in reply["installed"]}


def check(found: Resolution, wanted: Resolution) -> None:
    if found != wanted:
        wrong = sorted(set(found.items()) ^ set(wanted.items()))
        raise Failure("%d pins found, %d expected; differing: %s" % (len(found), len(wanted), wrong[:6]))


# --- the scenario ----------------------------------------------------------------------------


class LargeGraph:
    def __init__(self, work: str, url: str, graph: Graph, rounds: int) -> None:
        self.work, self.url, self.graph, self.rounds = work, url, graph, rounds
        self.results: Dict[Row, List[float]] = {}
        self.failures: Dict[Row, str] = {}
        self.notes: List[str] = []
        if rounds > len(graph.pinnable):
            raise ValueError("at most %d rounds (one new question each)" % len(graph.pinnable))
        self.base = [ROOT]
        # Round r's new question: the root, and one more distribution pinned to an older version.
        self.variants = [[ROOT, "%s==%s" % (graph.pinnable[r], VERSIONS[ANCHOR + r % 4])] for r in range(rounds)]
        self.expected: Dict[str, Resolution] = {}

    def venv_python(self, label: str) -> str:
        path = os.path.join(self.work, "venv-" + label)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True)
        return os.path.join(path, "bin", "python")

    def engine_command(self, python: str) -> str:
        return "pip install --dry-run --python %s -i %s" % (python, self.url)

    def attempt(self, tool: Row, action: Callable[[], float]) -> None:
        if tool in self.failures:
            return
        try:
            self.results.setdefault(tool, []).append(action())
        except Failure as exc:
            self.failures[tool] = str(exc)

    def expect(self, requirements: List[str]) -> Resolution:
        return self.expected[" ".join(requirements)]

    # Untimed preparation -------------------------------------------------------------------

    def prepare_uv(self) -> None:
        """uv answers every question once (warming its cache): its answers are the expected
        ones. The first run is verbose, to count the resolver's decisions."""
        self.uv = Uv(self.work, self.url, self.venv_python("uv"))
        _, pins, log = self.uv.resolve(self.base, "-v")
        decisions = sum(1 for line in log.splitlines() if "Selecting: " in line)
        conflicts = sum(1 for line in log.splitlines() if "Recording dependency conflict" in line)
        predicted = dict(self.graph.newest_allowed(), **{ROOT: VERSIONS[-1]})
        older = sum(1 for v in pins.values() if v != VERSIONS[-1])
        self.notes.append(
            "graph: %d distributions (root included) x %d versions = %d wheels, PEP 658 metadata served; "
            "the resolution pins %d distributions, %d of them below their newest version (%s the generator's "
            "prediction); uv -v made %d decisions for them and recorded %d dependency conflicts (backtracking)"
            % (PACKAGES + 1, len(VERSIONS), len(self.graph.requires), len(pins), older,
               "as" if pins == predicted else "NOT as", decisions, conflicts))
        for requirements in [self.base] + self.variants:
            self.expected[" ".join(requirements)] = self.uv.resolve(requirements)[1]

    def prepare_engine(self) -> None:
        """Warm the engine's cache in another process with every question, then start the
        long-lived worker and ask each of its environments once (and the repeated question
        twice: a call on freshly read index pages keeps no resolution, the next one does)."""
        env = tool_env(self.work, "engine")
        # The new processes' environment: its interpreter facts are cached too, as uv's are.
        self.fresh_python = self.venv_python("fresh")
        warm_up = Worker(sys.executable, env)
        for requirements in [self.base] + self.variants:
            check(engine_resolve(warm_up, self.engine_command(self.fresh_python), requirements)[1],
                  self.expect(requirements))
        warm_up.close()
        self.new_python, self.same_python = self.venv_python("warm-new"), self.venv_python("warm-same")
        self.worker = Worker(sys.executable, env)
        for python in (self.new_python, self.same_python, self.same_python):
            check(engine_resolve(self.worker, self.engine_command(python), self.base)[1], self.expect(self.base))

    # Timed rounds --------------------------------------------------------------------------

    def uv_round(self) -> float:
        elapsed, pins, _ = self.uv.resolve(self.base)
        check(pins, self.expect(self.base))
        return elapsed

    def fresh_round(self) -> float:
        """A new process's first call (returned), and its start and import (recorded aside)."""
        start = time.perf_counter()
        worker = Worker(sys.executable, tool_env(self.work, "engine"))
        started = (time.perf_counter() - start) * 1000.0
        try:
            call, pins = engine_resolve(worker, self.engine_command(self.fresh_python), self.base)
            check(pins, self.expect(self.base))
        finally:
            worker.close()
        self.results.setdefault(FRESH_START, []).append(started)
        self.results.setdefault(FRESH_TOTAL, []).append(started + call)
        return call

    def reused(self, python: str) -> int:
        return self.worker.call({"op": "counters", "python": python})["counters"]["resolutions_reused"]

    def warm_new_round(self, r: int) -> float:
        before = self.reused(self.new_python)
        elapsed, pins = engine_resolve(self.worker, self.engine_command(self.new_python), self.variants[r])
        check(pins, self.expect(self.variants[r]))
        if self.reused(self.new_python) != before:
            raise Failure("a new question reused an earlier resolution")
        return elapsed

    def warm_same_round(self) -> float:
        elapsed, pins = engine_resolve(self.worker, self.engine_command(self.same_python), self.base)
        check(pins, self.expect(self.base))
        return elapsed

    def run(self) -> None:
        self.prepare_uv()
        self.prepare_engine()
        reused_before = self.reused(self.same_python)
        for r in range(self.rounds):
            self.attempt(UV, self.uv_round)
            self.attempt(FRESH_CALL, self.fresh_round)
            self.attempt(WARM_NEW, lambda r=r: self.warm_new_round(r))
            self.attempt(WARM_SAME, self.warm_same_round)
        self.notes.append("`resolutions_reused` of the repeated question's environment: %d before the %d rounds, "
                          "%d after" % (reused_before, self.rounds, self.reused(self.same_python)))
        self.worker.close()

    def report(self) -> str:
        lines = ["| scenario | tool | median | ratio to uv |", "|:--|:--|--:|--:|"]
        uv = statistics.median(self.results[UV]) if self.results.get(UV) else None
        for row in ORDER:
            if row in self.failures:
                lines.append("| %s | %s | **FAILED**: %s | |" % (row + (self.failures[row].replace("|", "/")[:160],)))
            elif self.results.get(row):
                median = statistics.median(self.results[row])
                ratio = "%.2fx" % (median / uv) if uv and row != UV else ""
                lines.append("| %s | %s | %s | %s |" % (row + (fmt(median, "ms"), ratio)))
        return "\n".join(lines)


def measure(rounds: int, work: str) -> str:
    """Build the graph's index under ``work``, serve it, run the rounds; return Markdown."""
    graph = generate()
    build_index(graph, os.path.join(work, "index"))
    with sample_index.StaticIndex(os.path.join(work, "index")) as index:
        bench = LargeGraph(work, index.url, graph, rounds)
        try:
            bench.run()
        except Failure as exc:  # in the untimed preparation: no figure can stand
            bench.notes.append("**FAILED** before the rounds: %s" % exc)
    return "\n".join([
        "Large resolution: `%s` and all it pulls in, as a dry run into an empty environment; medians of %d "
        "rounds, tools alternating. Every tool's cache was warmed by an untimed run of every question first, "
        "so all read HTTP-cached pages and metadata; a new process's first call reads them from that cache, "
        "the long-lived process keeps the pages it read." % (ROOT, rounds),
        "",
        bench.report(),
        "",
        "Notes: " + "; ".join(bench.notes) + ".",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="uv-ffi-large-graph-")
    try:
        print(measure(args.rounds, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
