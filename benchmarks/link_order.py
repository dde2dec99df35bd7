"""Write ``rust/link-order.txt``: the functions of the library that a host session runs.

    cargo build --profile dist          # in rust/: the library and its linker map
    python benchmarks/link_order.py [--library PATH] [--map PATH] [--rounds 2]
    cargo build --profile dist          # linked in that order

The benchmark's stages (``compare.py``, a few rounds, this engine and ``uv`` only, and the large
resolution) and a session through the rest of uv's command line (``cli_session.py``) run with
each process under valgrind's callgrind. Each instruction of the library that ran is looked up
in the linker's map of that build (``rust/build.rs`` writes it beside the library), and the
function of every code section that ran in any process is written to the file: first those the
host's thread runs in a warm no-op, then the rest of a host's steady state
(``hot_session.py``), then those run by the most processes. ``build.rs`` hands the file to LLD's ``--symbol-ordering-file``, so
that the code a host runs is laid out side by side and a process maps fewer of the library's
pages.

Symbol names carry a hash of their crate's build settings: the file matches builds of the same
``Cargo.lock`` and profile. A function the file does not name is laid out after those it names,
so a stale file costs memory, never correctness. Re-run this script after upgrading uv's crates.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import glob
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Set, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ORDER_FILE = os.path.join(ROOT, "rust", "link-order.txt")
#: The entry points of the warm no-op: the reply and its release.
NO_OP_ENTRY_POINTS = ("uv_ffi_run", "uv_ffi_string_free")


def default_library() -> str:
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "rust", "target")
    return os.path.join(target, "dist", "libuv_ffi.so")


class LinkMap:
    """The code sections of an LLD map (``-Map``): sorted start addresses, sizes and the symbol
    each is named after (``.text.<symbol>``, as with ``-ffunction-sections``)."""

    def __init__(self, path: str) -> None:
        sections: List[Tuple[int, int, str]] = []
        self.text_size = 0
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                # VMA LMA size align, then `file:(section)` for an input section.
                words = line.split(None, 4)
                if len(words) == 5 and words[4].strip() == ".text":
                    self.text_size = int(words[2], 16)  # the output section
                if len(words) < 5 or ":(.text." not in words[4]:
                    continue
                section = words[4].rstrip().rsplit(":(", 1)[1].rstrip(")")
                size = int(words[2], 16)
                if size:
                    sections.append((int(words[0], 16), size, symbol_of(section)))
        sections.sort()
        self.starts = [start for start, _, _ in sections]
        self.sections = sections

    def symbol_at(self, address: int):
        index = bisect.bisect_right(self.starts, address) - 1
        if index >= 0:
            start, size, name = self.sections[index]
            if address < start + size:
                return name
        return None


def symbol_of(section: str) -> str:
    """``.text.unlikely.f`` and ``.text.f`` both hold ``f``."""
    name = section[len(".text."):]
    for prefix in ("unlikely.", "hot.", "startup.", "exit."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def record(library: str, rounds: int, out_dir: str) -> None:
    """Run the benchmark's stages with every worker under callgrind, one profile per process,
    then the rest of the command line (``cli_session.py``)."""
    callgrind = [
        "valgrind", "--tool=callgrind", "--dump-instr=yes", "--compress-strings=no",
        "--compress-pos=no", "--callgrind-out-file=%s/callgrind.%%p" % out_dir,
    ]
    env = dict(os.environ, UV_FFI_LIBRARY=library, UV_FFI_BENCH_WORKER_PREFIX=" ".join(callgrind))
    command = [sys.executable, os.path.join(HERE, "compare.py"), "--rounds", str(rounds),
               "--skip-upstream", "--skip-pip", "--out", os.path.join(out_dir, "results.md")]
    subprocess.run(command, env=env, check=True)
    subprocess.run(callgrind + [sys.executable, os.path.join(HERE, "cli_session.py")],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    record_steady_state(library, out_dir)


def record_steady_state(library: str, out_dir: str) -> None:
    """Profile ``hot_session.py`` after its warm-up only, one profile per thread (``*-01`` is the
    host's thread): once repeating the warm no-op alone (``noop.<pid>-*``), once its whole
    steady state (``hot.<pid>-*``)."""
    for name, options in (("noop", ["--no-ops-only", "--rounds", "20"]), ("hot", [])):
        command = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
            "--dump-instr=yes", "--compress-strings=no", "--compress-pos=no",
            "--callgrind-out-file=%s/%s.%%p" % (out_dir, name),
            sys.executable, os.path.join(HERE, "hot_session.py"), *options,
        ]
        run_after_warm_up(command, dict(os.environ, UV_FFI_LIBRARY=library))


def run_after_warm_up(command: List[str], env: Dict[str, str]) -> None:
    """Run ``hot_session.py`` under callgrind with instrumentation turned on once it is ready."""
    with subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as session:
        if session.stdout.readline().strip() != "ready":
            raise SystemExit("hot_session.py did not get ready")
        subprocess.run(["callgrind_control", "--instr=on", str(session.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        session.stdin.write("go\n")
        session.stdin.flush()
        if session.stdout.readline().strip() != "done":
            raise SystemExit("hot_session.py failed")
    if session.returncode:
        raise SystemExit("hot_session.py exited with %d" % session.returncode)


def symbols_run(profile: str, library: str, link_map: LinkMap) -> Set[str]:
    """The library's functions (their sections' symbols) with an instruction that ran, in one
    callgrind profile."""
    names: Set[str] = set()
    in_library = False
    real = os.path.realpath(library)
    with open(profile, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("ob="):
                in_library = os.path.realpath(line[3:].strip()) == real
            elif in_library and line.startswith("0x"):
                # Callgrind writes an object's instruction addresses as the object's own.
                name = link_map.symbol_at(int(line.split(None, 1)[0], 16))
                if name:
                    names.add(name)
    return names


def steady_state_ranks(out_dir: str, library: str, link_map: LinkMap) -> Dict[str, int]:
    """0 for the functions the host's thread ran in the warm no-op (the call a host repeats
    most, and the one most often made on cold CPU caches), 1 for those it ran in the rest of
    ``hot_session.py``'s steady state (the C entry points among them), 2 for those only other
    threads ran."""
    rank: Dict[str, int] = {}
    threads = sorted(glob.glob(os.path.join(out_dir, "hot.*-*")))
    for profile in threads[1:] + sorted(glob.glob(os.path.join(out_dir, "noop.*-*")))[1:]:
        rank.update(dict.fromkeys(symbols_run(profile, library, link_map), 2))
    on_host_thread = symbols_run(threads[0], library, link_map) if threads else set()
    if not on_host_thread:
        raise SystemExit("the steady-state profile holds none of the library's functions")
    rank.update(dict.fromkeys(on_host_thread, 1))
    no_op = sorted(glob.glob(os.path.join(out_dir, "noop.*-01")))
    rank.update(dict.fromkeys(symbols_run(no_op[0], library, link_map) if no_op else (), 0))
    return rank


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", default=default_library(), help="a build of the library")
    parser.add_argument("--map", help="that build's linker map (default: the one beside it)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each benchmark stage (default 2)")
    args = parser.parse_args()
    link_map = LinkMap(args.map or os.path.splitext(args.library)[0] + ".map")
    if not link_map.sections:
        parser.error("the linker map of %s holds no code sections" % args.library)
    with tempfile.TemporaryDirectory(prefix="uv-ffi-order-") as out_dir:
        record(args.library, args.rounds, out_dir)
        used_by: Dict[str, int] = collections.Counter()
        profiles = glob.glob(os.path.join(out_dir, "callgrind.*"))
        for profile in profiles:
            used_by.update(symbols_run(profile, args.library, link_map))
        rank = steady_state_ranks(out_dir, args.library, link_map)
    # The C entry points, called through libffi, are counted by callgrind as part of libffi's
    # function that called them: every host call runs one.
    for _, _, name in link_map.sections:
        if name.startswith("uv_ffi_"):
            used_by[name] = len(profiles)
            rank[name] = 0 if name in NO_OP_ENTRY_POINTS else min(rank.get(name, 1), 1)
    used_by.update(dict.fromkeys(rank, 0))  # counts unchanged; every ranked name listed
    ordered = sorted(used_by, key=lambda name: (rank.get(name, 3), -used_by[name], name))
    with open(ORDER_FILE, "w", encoding="utf-8") as handle:
        handle.writelines(name + "\n" for name in ordered)
    hot = sum(size for _, size, name in link_map.sections if name in used_by)
    total = sum(size for _, size, _ in link_map.sections)
    steady = sum(size for _, size, name in link_map.sections if name in rank)
    print("%d sections (%.1f of %.1f MB of code) from %d processes written to %s; the steady "
          "state's %d first (%.2f MB)" % (len(ordered), hot / 1e6, total / 1e6, len(profiles),
                                          ORDER_FILE, len(rank), steady / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
