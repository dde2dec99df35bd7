"""Build: setuptools-rust compiles the cdylib into the package, cffi writes its ABI-mode module.

The library does not link against Python, so:

- it is named ``uv_ffi/_uv_ffi_lib.so`` (``.dylib``, ``.dll``), with no interpreter tag;
- the wheel is tagged ``py3-none-<platform>``: one wheel serves CPython 3.8+ and PyPy;
- on Linux the platform is ``manylinux_<major>_<minor>_<arch>``, the glibc floor read from the
  library's own symbol versions (``auditwheel show`` confirms it in ``.ci/interpreters.sh``).

The version is written once, in ``rust/Cargo.toml``; the Python package takes it from there.
The wheel carries the C header (``uv_ffi/include/uv_ffi.h``) for C and Go users, and leaves out
the test-only helpers (``uv_ffi/sample_index.py``), which stay in the source tree and the sdist.
"""

import glob
import os
import re
import shutil
import struct
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools_rust import Binding, RustExtension
from setuptools_rust.build import build_rust

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover - setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "uv_ffi"
#: The library's stem inside the package; uv_ffi/paths.py looks for the same name.
LIBRARY_STEM = "_uv_ffi_lib"
HEADER = os.path.join(HERE, "rust", "include", "uv_ffi.h")
#: Modules of the package that are for the tests and benchmarks only: not in the wheel.
TEST_ONLY_MODULES = ("sample_index",)


def cargo_version(path=os.path.join(HERE, "rust", "Cargo.toml")):
    """``version`` of the ``[package]`` table of rust/Cargo.toml: the one place it is written."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    package = re.search(r"^\[package\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    found = package and re.search(r'^version\s*=\s*"([^"]+)"', package.group(1), re.M)
    if not found:
        raise RuntimeError("no [package] version in " + path)
    return found.group(1)


def cargo_crate_types(path=os.path.join(HERE, "rust", "Cargo.toml")):
    """``crate-type`` of the ``[lib]`` table of rust/Cargo.toml, in its order."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    lib = re.search(r"^\[lib\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    found = lib and re.search(r"^crate-type\s*=\s*\[([^\]]*)\]", lib.group(1), re.M)
    return re.findall(r'"([^"]+)"', found.group(1)) if found else ["cdylib"]


def library_suffix():
    if sys.platform == "win32":
        return ".dll"
    if sys.platform == "darwin":
        return ".dylib"
    return ".so"


class BuildRust(build_rust):
    """Name the library ``_uv_ffi_lib.so``, not after the building interpreter
    (``_uv_ffi_lib.cpython-311-x86_64-linux-gnu.so``): it is no extension module."""

    def get_dylib_ext_path(self, ext, target_fname):
        tagged = super().get_dylib_ext_path(ext, target_fname)
        return os.path.join(os.path.dirname(tagged), LIBRARY_STEM + library_suffix())

    def install_extension(self, ext, dylib_paths, build_artifact_dir):
        super().install_extension(ext, dylib_paths, build_artifact_dir)
        # Earlier builds left interpreter-tagged copies beside it; a wheel or a source tree must
        # hold exactly one library.
        wanted = os.path.abspath(self.get_dylib_ext_path(ext, ext.name))
        for stale in glob.glob(os.path.join(os.path.dirname(wanted), LIBRARY_STEM + "*")):
            if os.path.abspath(stale) != wanted and not stale.endswith("~"):
                os.remove(stale)


class BuildPy(build_py):
    """Leave the test-only modules out of the wheel and put the C header in it.

    Editable installs import the source tree, where both stay as they are (the header is found in
    rust/include there).
    """

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if getattr(self, "editable_mode", False):
            return modules
        return [m for m in modules if not (m[0] == PACKAGE and m[1] in TEST_ONLY_MODULES)]

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        package_dir = os.path.join(self.build_lib, PACKAGE)
        # build/lib may hold files from an older build; install copies the whole tree.
        for module in TEST_ONLY_MODULES:
            for stale in glob.glob(os.path.join(package_dir, module + ".py*")):
                os.remove(stale)
        include = os.path.join(package_dir, "include")
        os.makedirs(include, exist_ok=True)
        self.copy_file(HEADER, os.path.join(include, "uv_ffi.h"))

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [os.path.join(self.build_lib, PACKAGE, "include", "uv_ffi.h")]


# --- The wheel's platform tag ------------------------------------------------------------------

#: Libraries every manylinux policy lets a wheel take from the system.
MANYLINUX_SYSTEM_LIBS = {
    "libc.so.6", "libm.so.6", "libgcc_s.so.1", "libpthread.so.0", "libdl.so.2", "librt.so.1",
    "libutil.so.1", "libstdc++.so.6", "libresolv.so.2", "libnsl.so.1",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "ld-linux.so.2", "ld64.so.2",
    "ld-linux-armhf.so.3", "ld64.so.1",
}


def elf_needs(path):
    """``(needed libraries, required symbol versions)`` of an ELF shared library.

    Reads the ``DT_NEEDED`` entries of the dynamic section and the version names of the
    ``SHT_GNU_verneed`` section (``GLIBC_2.34``, ``GCC_3.0``, ...), as ``readelf -d -V`` shows.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:4] != b"\x7fELF":
        raise ValueError(path + " is not an ELF file")
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
        section = end + "IIQQQQIIQQ"
        dyn_entry, dyn_size = end + "qQ", 16
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
        section = end + "IIIIIIIIII"
        dyn_entry, dyn_size = end + "iI", 8
    sections = [struct.unpack_from(section, data, shoff + i * shentsize) for i in range(shnum)]

    def string(table, offset):
        start = sections[table][4] + offset
        return data[start:data.index(b"\0", start)].decode("ascii", "replace")

    needed, versions = set(), set()
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, _entsize in sections:
        if kind == 6:  # SHT_DYNAMIC
            for at in range(offset, offset + size, dyn_size):
                tag, value = struct.unpack_from(dyn_entry, data, at)
                if tag == 0:
                    break
                if tag == 1:  # DT_NEEDED
                    needed.add(string(link, value))
        elif kind == 0x6FFFFFFE:  # SHT_GNU_verneed
            at = offset
            while True:
                _version, count, _file, aux, following = struct.unpack_from(end + "HHIII", data, at)
                entry = at + aux
                for _ in range(count):
                    _hash, _flags2, _other, name, next_aux = struct.unpack_from(end + "IHHII", data, entry)
                    versions.add(string(link, name))
                    entry += next_aux
                if not following:
                    break
                at += following
    return needed, versions


def manylinux_tag(library, platform):
    """``manylinux_X_Y_<arch>`` for ``linux_<arch>``, or None when the library needs more than a
    manylinux wheel may take from the system (then auditwheel repair would have to graft it)."""
    needed, versions = elf_needs(library)
    if needed - MANYLINUX_SYSTEM_LIBS:
        sys.stderr.write(
            "uv-ffi: %s needs %s, which no manylinux policy provides; the wheel keeps the tag %s\n"
            % (library, ", ".join(sorted(needed - MANYLINUX_SYSTEM_LIBS)), platform)
        )
        return None
    glibc = [tuple(int(p) for p in v[len("GLIBC_"):].split(".")) for v in versions
             if re.match(r"^GLIBC_\d+(\.\d+)+$", v)]
    if not glibc:
        return None  # not glibc (musl): auditwheel decides
    major, minor = max(glibc)[:2]
    return "manylinux_%d_%d_%s" % (major, minor, platform[len("linux_"):])


class PlatformWheel(bdist_wheel):
    """Tag the wheel for the platform only (no Python ABI is involved); on Linux, with the
    manylinux glibc floor of the library it holds. An explicit ``--plat-name`` is kept."""

    def get_tag(self):
        _, _, platform = super().get_tag()
        if platform.startswith("linux_") and not self.plat_name_supplied:
            found = glob.glob(os.path.join(self.bdist_dir, "**", LIBRARY_STEM + ".so"), recursive=True)
            if len(found) == 1:
                platform = manylinux_tag(found[0], platform) or platform
        return "py3", "none", platform


BUILD_HELP = """
=============================DEBUG ASSISTANCE=============================
uv-ffi builds a Rust library with cargo (Rust >= 1.95) and a C compiler.
  - cargo on PATH: {cargo}
  - Install Rust from your package manager or rustup, then retry.
  - Set CARGO_TARGET_DIR to a folder outside the source tree to reuse builds.
  - The first build compiles uv's crates and takes several minutes.
  - The error itself is printed next to this box.
=============================DEBUG ASSISTANCE=============================

"""


def main():
    try:
        setup(
            version=cargo_version(),
            rust_extensions=[
                RustExtension(
                    PACKAGE + "." + LIBRARY_STEM,
                    path="rust/Cargo.toml",
                    binding=Binding.NoBinding,
                    debug=False,
                    # setuptools-rust runs `cargo rustc --lib --crate-type cdylib`, a different
                    # cargo unit from `cargo build --release` (Cargo.toml asks for cdylib and
                    # rlib): each would relink the library (minutes, thin LTO) after the other.
                    # Asking for Cargo.toml's own crate types makes it the same unit, so a wheel
                    # build reuses a `cargo build --release` in the same CARGO_TARGET_DIR.
                    args=[arg for kind in cargo_crate_types() for arg in ("--crate-type", kind)]
                    # Cargo.toml's shipping profile (fat LTO, smaller code), in target/dist.
                    + ["--profile", "dist"],
                )
            ],
            cffi_modules=["build_ffi.py:ffibuilder"],
            cmdclass={"build_rust": BuildRust, "build_py": BuildPy, "bdist_wheel": PlatformWheel},
            zip_safe=False,
        )
    except (Exception, SystemExit) as exc:
        # setuptools reports a failed command (cargo's included) as SystemExit("error: ...").
        if isinstance(exc, SystemExit) and exc.code in (None, 0):
            raise
        sys.stderr.write(BUILD_HELP.format(cargo=shutil.which("cargo") or "not found"))
        raise


if __name__ == "__main__":
    main()
