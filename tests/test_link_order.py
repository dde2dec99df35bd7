"""The library's layout: the link order file, the script that writes it, and the stripped build.

``benchmarks/link_order.py`` records which of the library's functions a host session runs and
``rust/build.rs`` asks LLD to lay them out first (see both). These tests check the script's
reading of a linker map and of callgrind's profiles on small files of each format, the file
it wrote, that the shipped build laid out the functions it names first (the drift check), and
that the library a host loads carries no symbol table.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Dict

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import link_order  # noqa: E402

# LLD's map: an output section, input sections (`file:(section)`), then their symbols.
MAP = """\
             VMA              LMA     Size Align Out     In      Symbol
          f46fc0           f46fc0  1f4810c    64 .text
          f46fc0           f46fc0       b9    16         /usr/lib/gcc/x86_64-linux-gnu/12/crtbeginS.o:(.text)
          f46fc0           f46fc0        0     1                 deregister_tm_clones
          f47080           f47080      141    16         /t/uv_ffi.cgu.0.rcgu.o:(.text._RNvCs1_3foo5first)
          f47080           f47080      141     1                 foo::first
          f471d0           f471d0      10c    16         /t/uv_ffi.cgu.0.rcgu.o:(.text.unlikely._ZN3foo4coldE)
          f471d0           f471d0      10c     1                 foo::cold
          f472e0           f472e0      119    16         /t/libaws.a(x.o):(.text.aws_lc_sha256)
          f47400           f47400        0    16         /t/uv_ffi.cgu.0.rcgu.o:(.text.empty)
          2914e0           2914e0       10     4         /t/uv_ffi.cgu.0.rcgu.o:(.rodata._ZN3foo4dataE)
"""

# Callgrind with --dump-instr=yes --compress-strings=no --compress-pos=no: instruction addresses
# are the object's own; other objects' lines do not count.
PROFILE = """\
positions: instr line
events: Ir
ob=/lib/libc.so.6
fn=memcpy
0xf47081 0 3
ob={library}
fn=0xf47080
0xf47080 0 1
0xf47100 0 1
calls=1 0xf472e0
0xf47104 0 9
ob={library}
fn=0xf472e0
0xf472e5 0 2
"""


@pytest.fixture
def link_map(tmp_path):
    path = tmp_path / "uv_ffi.map"
    path.write_text(MAP)
    return link_order.LinkMap(str(path))


def test_the_map_gives_each_code_section_its_symbol(link_map):
    # Data sections, empty sections and the unnamed `.text` of a C start file are left out.
    assert [name for _, _, name in link_map.sections] == [
        "_RNvCs1_3foo5first", "_ZN3foo4coldE", "aws_lc_sha256"]
    assert link_map.symbol_at(0xF47080) == "_RNvCs1_3foo5first"
    assert link_map.symbol_at(0xF47080 + 0x140) == "_RNvCs1_3foo5first"
    assert link_map.symbol_at(0xF47080 + 0x141) is None  # the padding after it
    assert link_map.symbol_at(0xF471D0) == "_ZN3foo4coldE"
    assert link_map.symbol_at(0x2914E0) is None


def test_a_profile_names_the_functions_of_the_library_that_ran(tmp_path, link_map):
    library = tmp_path / "libuv_ffi.so"
    library.write_bytes(b"")
    profile = tmp_path / "callgrind.1"
    profile.write_text(PROFILE.format(library=library))
    # memcpy's address falls in `first`'s range but belongs to libc: not counted.
    ran = link_order.symbols_run(str(profile), str(library), link_map)
    assert ran == {"_RNvCs1_3foo5first", "aws_lc_sha256"}


def test_the_host_thread_s_no_op_ranks_first_then_its_steady_state(tmp_path, link_map):
    # hot_session.py's profiles, one file per thread: the host's thread is the first.
    library = tmp_path / "libuv_ffi.so"
    library.write_bytes(b"")
    first = "ob={library}\nfn=0xf47080\n0xf47080 0 1\n".format(library=library)
    cold = "ob={library}\nfn=0xf471d0\n0xf471d0 0 4\n".format(library=library)
    sha = "ob={library}\nfn=0xf472e0\n0xf472e0 0 2\n".format(library=library)
    (tmp_path / "noop.5-01").write_text(first)
    (tmp_path / "noop.5-02").write_text(cold)
    (tmp_path / "hot.7-01").write_text(first + sha)
    (tmp_path / "hot.7-02").write_text(first + cold)
    ranks = link_order.steady_state_ranks(str(tmp_path), str(library), link_map)
    assert ranks == {"_RNvCs1_3foo5first": 0, "aws_lc_sha256": 1, "_ZN3foo4coldE": 2}
    with pytest.raises(SystemExit):
        link_order.steady_state_ranks(str(tmp_path / "none"), str(library), link_map)


def test_the_link_order_file_begins_with_the_steady_state_s_entry_points():
    with open(os.path.join(ROOT, "rust", "link-order.txt"), encoding="utf-8") as handle:
        first = handle.read().splitlines()[:2000]
    assert "uv_ffi_run" in first and "uv_ffi_string_free" in first


def test_the_link_order_file_names_one_symbol_per_line():
    with open(os.path.join(ROOT, "rust", "link-order.txt"), encoding="utf-8") as handle:
        names = handle.read().splitlines()
    assert len(names) > 1000
    assert len(set(names)) == len(names)
    assert all(name and name == name.strip() and " " not in name for name in names)
    assert not any(name.startswith(".text") for name in names)
    # The functions every call runs are in it: the C entry points.
    assert "uv_ffi_run" in names


def section_sizes(library: str) -> Dict[str, int]:
    """The library's ELF sections by name, as ``readelf -S`` lists them: their sizes."""
    table = subprocess.run(["readelf", "-S", "-W", library], capture_output=True, text=True, check=True)
    sizes = {}
    for line in table.stdout.splitlines():
        words = line.replace("[ ", "[").split()
        if len(words) > 5 and words[0].startswith("[") and words[0][1:-1].isdigit():
            sizes[words[1]] = int(words[5], 16)
    return sizes


def test_the_library_a_host_loads_carries_no_symbol_table():
    import uv_ffi.paths

    sections = section_sizes(uv_ffi.paths.library_path())
    assert ".dynsym" in sections
    assert ".symtab" not in sections


def shipped_build_map() -> str:
    """The linker's map of the shipped profile's last build (``build.rs`` writes it beside the
    library, in ``$CARGO_TARGET_DIR/dist``: run the tests with the variable the build had)."""
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "rust", "target")
    path = os.path.join(target, "dist", "libuv_ffi.map")
    assert os.path.isfile(path), "no linker map of the shipped build at %s (CARGO_TARGET_DIR?)" % path
    return path


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64"),
    reason="the link order is applied where rustc links with its own LLD: x86_64 Linux",
)
def test_the_shipped_build_lays_out_the_file_s_functions_first():
    """Fails when the file no longer matches the build (after an upgrade of uv's crates or of
    Rust): regenerate it with ``benchmarks/link_order.py``."""
    import uv_ffi.paths

    link_map = link_order.LinkMap(shipped_build_map())
    # The map is the one of the library this package loads: the same amount of code.
    assert link_map.text_size == section_sizes(uv_ffi.paths.library_path())[".text"]
    with open(os.path.join(ROOT, "rust", "link-order.txt"), encoding="utf-8") as handle:
        names = handle.read().splitlines()
    in_file = set(names)
    in_build = {name for _, _, name in link_map.sections}
    found = [name for name in names if name in in_build]
    assert len(found) >= 0.95 * len(names), "%d of %d names are in the build" % (len(found), len(names))
    # Every section of a function the file names comes before every other (a section may hold
    # several of the names, and a name may be the one of several sections).
    named = [i for i, (_, _, name) in enumerate(link_map.sections) if name in in_file]
    assert named == list(range(len(named)))
