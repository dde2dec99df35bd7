"""Smoke suite: the installed package working on this interpreter, with no network.

``.ci/interpreters.sh`` runs this file on every interpreter CI proves (CPython 3.8+ and PyPy),
each time in a fresh virtual environment holding the built wheel, pytest and nothing else, from a
folder outside the source tree; it sets ``UV_FFI_SMOKE_WHEEL=1`` there, which adds the checks
about what the wheel ships. The main suite collects this file too (against the editable install).

Self-contained on purpose: pytest only, no plugins, no ``uv_ffi.sample_index`` (it is not in the
wheel). Its own wheels are written here and installed with ``--find-links DIR --no-index``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

import pytest

_SESSION_DIR = tempfile.mkdtemp(prefix="uv-ffi-smoke-")
# The engine is process-wide and reads its cache folder when it starts: a private one, unless the
# main suite's conftest chose one already.
os.environ.setdefault("UV_CACHE_DIR", os.path.join(_SESSION_DIR, "cache"))

import uv_ffi  # noqa: E402  (after the environment is set)
from uv_ffi import errors  # noqa: E402

IN_WHEEL = os.environ.get("UV_FFI_SMOKE_WHEEL") == "1"

#: (name, version, requirements): two versions of an application and of its dependency.
PACKAGES = [
    ("smoke-core", "1.0", []),
    ("smoke-core", "2.0", []),
    ("smoke-app", "1.0", ["smoke-core>=1.0,<2"]),
    ("smoke-app", "2.0", ["smoke-core>=2.0"]),
]


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(dest: str, name: str, version: str, requires=()) -> str:
    """Write a real ``py3-none-any`` wheel (METADATA, WHEEL, RECORD with hashes, a module)."""
    dist = re.sub(r"[-_.]+", "_", name)
    module = dist.lower()
    dist_info = "%s-%s.dist-info" % (dist, version)
    metadata = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version]
    metadata += ["Requires-Dist: " + requirement for requirement in requires]
    files = [
        (module + "/__init__.py", ("__version__ = %r\n" % version).encode()),
        (dist_info + "/METADATA", ("\n".join(metadata) + "\n").encode()),
        (
            dist_info + "/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: uv-ffi-smoke\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
    ]
    record = ["%s,%s,%d" % (path, _record_hash(data), len(data)) for path, data in files]
    files.append((dist_info + "/RECORD", ("\n".join(record + [dist_info + "/RECORD,,"]) + "\n").encode()))
    path = os.path.join(dest, "%s-%s-py3-none-any.whl" % (dist, version))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files:
            info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return path


@pytest.fixture(scope="module")
def wheels() -> str:
    folder = os.path.join(_SESSION_DIR, "wheels")
    os.makedirs(folder, exist_ok=True)
    for name, version, requires in PACKAGES:
        build_wheel(folder, name, version, requires)
    return folder


class Env:
    """A fresh virtual environment of this interpreter, and the command prefix that targets it."""

    def __init__(self, root: str, wheels: str) -> None:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True)
        scripts = "Scripts" if os.name == "nt" else "bin"
        self.root = root
        self.python = os.path.join(root, scripts, "python")
        self.pip = "pip install --python %s --no-index --find-links %s " % (self.python, wheels)

    def on_disk(self) -> list:
        """``(name, version)`` of every ``.dist-info`` folder, read from the disk."""
        purelib = subprocess.run(
            [self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, stdout=subprocess.PIPE, universal_newlines=True,
        ).stdout.strip()
        found = []
        for entry in os.listdir(purelib):
            if entry.endswith(".dist-info") and entry.startswith("smoke_"):
                name, version = entry[: -len(".dist-info")].split("-")
                found.append((name.replace("_", "-"), version))
        return sorted(found)

    def imported_version(self, module: str) -> str:
        return subprocess.run(
            [self.python, "-c", "import %s; print(%s.__version__)" % (module, module)],
            check=True, stdout=subprocess.PIPE, universal_newlines=True,
        ).stdout.strip()


@pytest.fixture(scope="module")
def env(wheels) -> Env:
    """One environment the tests below act on in order: install, swap, no-op, view."""
    return Env(os.path.join(_SESSION_DIR, "venv"), wheels)


# --- import -------------------------------------------------------------------------------------


def test_import_and_library():
    from uv_ffi import _native

    info = _native.call("info", {})
    assert info["abi_version"] == _native.ABI_VERSION
    assert info["version"] == uv_ffi.__version__
    assert os.path.isfile(_native._library_path())
    print("%s %s: uv-ffi %s, library %s" % (
        sys.implementation.name, sys.version.split()[0], info["version"], _native._library_path()))


def check_wheel_contents():
    """What the installed wheel ships (run by .ci/interpreters.sh, which sets UV_FFI_SMOKE_WHEEL=1)."""
    from uv_ffi import paths

    package = os.path.dirname(os.path.abspath(uv_ffi.__file__))
    # Imported from the environment, not from a source tree.
    assert os.path.realpath(package).startswith(os.path.realpath(sysconfig.get_paths()["purelib"])) or \
        os.path.realpath(package).startswith(os.path.realpath(sysconfig.get_paths()["platlib"]))
    library = paths.library_path()
    # One library, named with no interpreter tag: it is no extension module.
    assert os.path.basename(library) == "_uv_ffi_lib" + paths.library_suffix()
    assert [f for f in os.listdir(package) if f.startswith("_uv_ffi_lib")] == [os.path.basename(library)]
    assert paths.library_dir() == package
    # The header ships inside the package, for C and Go users.
    assert paths.include_dir() == os.path.join(package, "include")
    with open(paths.header_path(), encoding="utf-8") as handle:
        header = handle.read()
    assert "omnipkg_uv_run_c" in header and "uv_ffi_string_free" in header
    # The test-only helpers do not ship.
    assert not os.path.exists(os.path.join(package, "sample_index.py"))


if IN_WHEEL:
    # Only where the package was installed from the wheel; the main suite runs from the source tree.
    test_wheel_contents = check_wheel_contents


# --- install, swap, no-op ------------------------------------------------------------------------


def test_install_with_dependencies(env):
    result = uv_ffi.install(env.pip + "smoke-app==1.0")
    assert result.installed == (("smoke-app", "1.0"), ("smoke-core", "1.0"))
    assert result.removed == ()
    assert env.on_disk() == [("smoke-app", "1.0"), ("smoke-core", "1.0")]
    assert env.imported_version("smoke_app") == "1.0"


def test_swap(env):
    result = uv_ffi.install(env.pip + "smoke-app==2.0")
    assert result.installed == (("smoke-app", "2.0"), ("smoke-core", "2.0"))
    assert result.removed == (("smoke-app", "1.0"), ("smoke-core", "1.0"))
    assert env.on_disk() == [("smoke-app", "2.0"), ("smoke-core", "2.0")]
    assert env.imported_version("smoke_core") == "2.0"


def test_noop(env):
    result = uv_ffi.install(env.pip + "smoke-app==2.0")
    assert result.satisfied
    assert (result.installed, result.removed) == ((), ())
    # The upstream-compatible tuple API says the same.
    assert uv_ffi.run(env.pip + "smoke-app==2.0") == (0, [], [], "")


# --- the view ------------------------------------------------------------------------------------


def test_view_get_patch_invalidate(env):
    expected = [("smoke-app", "2.0"), ("smoke-core", "2.0")]
    assert uv_ffi.get_site_packages_cache(env.python) == expected
    previous = uv_ffi.get_policy()
    uv_ffi.set_policy("trust")
    try:
        # Under `trust` the view is taken as it is: a patch shows at once.
        assert uv_ffi.patch_site_packages_cache([("phantom", "9.9")], [], python=env.python) is True
        assert uv_ffi.get_site_packages_cache(env.python) == sorted(expected + [("phantom", "9.9")])
        # Invalidating drops the view; the next read rescans the disk.
        uv_ffi.invalidate_site_packages_cache(env.python)
        assert uv_ffi.get_site_packages_cache(env.python) == expected
    finally:
        uv_ffi.set_policy(previous)
    # Under `validate`, a wrong patch costs a rescan, never a wrong answer.
    uv_ffi.patch_site_packages_cache([("phantom", "9.9")], [], python=env.python)
    assert uv_ffi.get_site_packages_cache(env.python) == expected


# --- bad input and the typed API -----------------------------------------------------------------


def test_unsatisfiable_request(env):
    with pytest.raises(errors.ResolutionError) as caught:
        uv_ffi.install(env.pip + "smoke-core==9.9")
    assert caught.value.exit_code != 0 and "smoke-core" in caught.value.full_text()
    rc, installed, removed, error = uv_ffi.run(env.pip + "smoke-core==9.9")
    assert rc != 0 and (installed, removed) == ([], []) and "smoke-core" in error
    # Nothing changed.
    assert env.on_disk() == [("smoke-app", "2.0"), ("smoke-core", "2.0")]


def test_bad_input(env):
    with pytest.raises(errors.InvalidRequest):
        uv_ffi.install(env.pip + "smoke-app===")
    with pytest.raises(errors.PythonNotFound):
        uv_ffi.install("pip install --python %s smoke-app" % os.path.join(_SESSION_DIR, "no-such-python"))
    rc, _, _, error = uv_ffi.run(env.pip + "smoke-app===")
    assert rc != 0 and error


def test_typed_api(env):
    result = uv_ffi.install(env.pip + "smoke-app==1.0")
    assert isinstance(result, uv_ffi.RunResult)
    assert result.exit_code == 0 and result.engine == "warm" and not result.dry_run
    assert os.path.realpath(result.environment) == os.path.realpath(env.root)
    assert result.target is None
    assert all(isinstance(phase, str) and isinstance(us, int) for phase, us in result.timings_us)
    assert issubclass(errors.ResolutionError, uv_ffi.UvFfiError)
    assert issubclass(errors.InvalidRequest, ValueError)


def test_c_abi_buffer_too_small(env):
    """The C entry point: a reply that does not fit gets -2 and the buffer is never overrun."""
    import json

    from uv_ffi import _native

    ffi, lib = _native.ffi, _native.lib
    buffer = ffi.new("char[96]")
    ffi.memmove(buffer, b"\x7f" * 96, 96)
    # A swap back to 2.0: its reply (two installed, two removed) is longer than 64 bytes.
    rc = lib.omnipkg_uv_run_c((env.pip + "smoke-app==2.0").encode(), buffer, 64)
    assert rc == -2
    assert ffi.buffer(buffer)[64:] == b"\x7f" * 32
    assert json.loads(ffi.string(buffer))["error"] == "buffer_too_small"
    assert env.on_disk() == [("smoke-app", "2.0"), ("smoke-core", "2.0")]


def teardown_module(module):
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)
