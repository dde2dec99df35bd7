"""Swap by rename (rust/src/stash.rs): a version a warm swap replaces is moved whole into
``.uv-ffi-stash`` and moved back when exactly that wheel is installed again.

Every test asserts what is on disk: after going through the stash, an environment (or
``--target`` folder) must equal one where the uv 0.12.5 binary installed the same version fresh,
with the same link mode and the same cache (diffkit.file_tree and diffkit.distributions: content,
mode, hardlink-ness, RECORD, INSTALLER, REQUESTED, direct_url.json). The distributions are this
module's own (``stashpkg-*``, pinned versions), published to conftest's index on 127.0.0.1.
"""

from __future__ import annotations

import base64
import csv
import fcntl
import glob
import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import sys
import textwrap
import time
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Tuple

import pytest

import diffkit
import uv_ffi
from conftest import IndexServer, Venv, free_port
from uv_ffi import _native, policy
from uv_ffi.demo import find_uv

UV = find_uv()
STASH = diffkit.STASH_DIR
LINK_MODES = ("hardlink", "copy", "symlink")

#: The uv binary gets no UV_* variable (its cache is named with --cache-dir) and a proxy that
#: does not exist for every host but 127.0.0.1.
NOWHERE = "http://127.0.0.1:%d" % free_port()
UV_ENV = {k: v for k, v in os.environ.items() if not k.startswith("UV_")}
UV_ENV.update({name: NOWHERE for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
                                           "https_proxy", "all_proxy")})
UV_ENV.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")


# ---------------------------------------------------------------------------------------------
# The distributions


def dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def build_wheel(dest: str, name: str, version: str, files: Dict[str, str],
                console_scripts: Optional[Dict[str, str]] = None) -> str:
    """A wheel holding exactly ``files`` (paths as in the archive, ``.data`` ones included)."""
    info = "%s-%s.dist-info" % (dist_name(name), version)
    content = [(path, text.encode()) for path, text in sorted(files.items())]
    if console_scripts:
        lines = ["[console_scripts]"] + ["%s = %s" % item for item in sorted(console_scripts.items())]
        content.append((info + "/entry_points.txt", ("\n".join(lines) + "\n").encode()))
    metadata = "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)
    content.append((info + "/METADATA", metadata.encode()))
    wheel = "Wheel-Version: 1.0\nGenerator: test_stash\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    content.append((info + "/WHEEL", wheel.encode()))
    path = os.path.join(dest, "%s-%s-py3-none-any.whl" % (dist_name(name), version))
    return diffkit._zip_wheel(path, info, content)


@dataclass(frozen=True)
class Shape:
    """One way a distribution's files lie in an environment."""

    name: str
    module_file: str  # defines VERSION and main() (prints it)
    module: str  # what imports it
    extra: Dict[str, str] = field(default_factory=dict)  # more files; "{v}" is the version
    console_scripts: Optional[Dict[str, str]] = None
    command: Optional[str] = None  # a bin/ script that prints the version


def shape_files(shape: Shape, version: str, salt: str = "") -> Dict[str, str]:
    files = {shape.module_file: "VERSION = %r\n%sdef main():\n    print(VERSION)\n" % (version, salt)}
    files.update({k.format(v=version): t.format(v=version) for k, t in shape.extra.items()})
    return files


SHAPES = {
    # A package folder (with a subpackage, and a file only this version has).
    "folder": Shape("stashpkg-folder", "stashpkg_folder/__init__.py", "stashpkg_folder", {
        "stashpkg_folder/sub/__init__.py": "",
        "stashpkg_folder/sub/deep.py": "DEEP = '{v}'\n",
        "stashpkg_folder/only-{v}.txt": "only in {v}\n",
    }),
    # A top-level module.
    "module": Shape("stashpkg-module", "stashpkg_module.py", "stashpkg_module"),
    # A .pth file putting a folder of the wheel on sys.path.
    "pth": Shape("stashpkg-pth", "stashpkg_pth_lib/stashpkg_pth_inner.py", "stashpkg_pth_inner", {
        "stashpkg_pth.pth": "stashpkg_pth_lib\n",
    }),
    # A console script in bin/.
    "script": Shape("stashpkg-script", "stashpkg_script.py", "stashpkg_script",
                    console_scripts={"stashpkg-script": "stashpkg_script:main"}, command="stashpkg-script"),
    # .data/data (into the environment's root) and .data/scripts (into bin/).
    "data": Shape("stashpkg-data", "stashpkg_data.py", "stashpkg_data", {
        "stashpkg_data-{v}.data/data/share/stashpkg_data/info.txt": "data of {v}\n",
        "stashpkg_data-{v}.data/scripts/stashpkg-data-tool": "#!python\nprint('{v}')\n",
    }, command="stashpkg-data-tool"),
}


def folderish(name: str) -> Shape:
    """A package folder with a console script, for single scenarios."""
    module = dist_name(name)
    return Shape(name, module + "/__init__.py", module, {
        module + "/data.txt": "payload {v}\n",
        module + "/only-{v}.txt": "only in {v}\n",
    }, console_scripts={name: module + ":main"}, command=name)


CRASH, TAMPER, OUTSIDE, LOCAL, ALT, SWITCH, MISC, EDITED, BYTECODE = (folderish("stashpkg-" + n) for n in (
    "crash", "tamper", "outside", "local", "alt", "switch", "misc", "edited", "bytecode"))
MANY = "stashpkg-many"
MANY_VERSIONS = ["1.%d" % i for i in range(18)]


class World(NamedTuple):
    url: str
    wheels: Dict[Tuple[str, str], str]  # (name, version) -> the wheel published
    root: str


@pytest.fixture(scope="module")
def world(index, tmp_path_factory) -> World:
    assert UV, "the uv 0.12.5 binary is needed (pip install uv==0.12.5)"
    version = subprocess.run([UV, "--version"], capture_output=True, text=True).stdout
    assert version.split()[:2] == ["uv", "0.12.5"], version
    root = str(tmp_path_factory.mktemp("stash"))
    dest = os.path.join(root, "wheels")
    wheels: Dict[Tuple[str, str], str] = {}
    for shape in SHAPES.values():
        for v in ("1.0", "1.1"):
            wheels[(shape.name, v)] = build_wheel(dest, shape.name, v, shape_files(shape, v),
                                                  shape.console_scripts)
    for shape in (CRASH, TAMPER, OUTSIDE, LOCAL, ALT, SWITCH, MISC, EDITED, BYTECODE):
        for v in ("1.0", "1.1"):
            wheels[(shape.name, v)] = build_wheel(dest, shape.name, v, shape_files(shape, v),
                                                  shape.console_scripts)
    for ns in ("a", "b"):
        for v in ("1.0", "1.1"):
            name = "stashpkg-ns-" + ns
            wheels[(name, v)] = build_wheel(dest, name, v, {
                "stashpkg_ns/%s/__init__.py" % ns: "VERSION = %r\n" % v,
                "stashpkg_ns/%s/only-%s.txt" % (ns, v): v,
            })
    for v in MANY_VERSIONS:
        wheels[(MANY, v)] = build_wheel(dest, MANY, v, {"stashpkg_many/__init__.py": "VERSION = %r\n" % v})
    for path in wheels.values():
        index.publish(path)
    return World(index.url, wheels, root)


# ---------------------------------------------------------------------------------------------
# Helpers


def cache_dir() -> str:
    return os.environ["UV_CACHE_DIR"]


def engine(python: str, url: str, *words: str, target: Optional[str] = None) -> uv_ffi.RunResult:
    argv = ["pip", "install", "--python", python, "-i", url, "--cache-dir", cache_dir()]
    if target is not None:
        argv += ["--target", target]
    return uv_ffi.install(argv + list(words))


def uv_binary(python: str, url: str, *words: str, target: Optional[str] = None) -> None:
    argv = [UV, "pip", "install", "--python", python, "-i", url, "--cache-dir", cache_dir()]
    if target is not None:
        argv += ["--target", target]
    done = subprocess.run(argv + list(words), capture_output=True, text=True, env=UV_ENV,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, "uv %s\n%s" % (" ".join(argv + list(words)), done.stderr)


def counts(python: Optional[str] = None, target: Optional[str] = None) -> Tuple[int, int]:
    """(stashed, restored) of an environment, or of a --target folder."""
    if target is None:
        found = uv_ffi.get_counters(python=python)
    else:
        # uv_ffi.get_counters names no --target folder: ask the view of the folder itself.
        found = _native.call("view_get", {"target": target, "check": False})["counters"]
    return found["stashed"], found["restored"]


def stash_of(root: str) -> str:
    return os.path.join(root, STASH)


def manifests(root: str) -> List[str]:
    """Names of the manifests in the stash of ``root`` (a venv or --target folder), sorted.
    A swap leaves writing its manifests to the engine's idle work; reading a view writes any
    still waiting, so the disk is read after that."""
    uv_ffi.get_counters()
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(stash_of(root), "*.json")))


def manifest_of(root: str, name: str, version: str) -> Optional[dict]:
    prefix = "%s-%s-" % (name, version)
    for entry in manifests(root):
        if entry.startswith(prefix):
            with open(os.path.join(stash_of(root), entry)) as handle:
                return json.load(handle)
    return None


def entries_with_prefix(root: str, prefix: str) -> List[str]:
    uv_ffi.get_counters()  # the manifests left to idle work written (see manifests())
    if not os.path.isdir(stash_of(root)):
        return []
    return sorted(e for e in os.listdir(stash_of(root)) if e.startswith(prefix))


#: The activation scripts name the environment's folder (venv1, venv2): not the install's.
ACTIVATE = re.compile(r"^bin/[Aa]ctivate")


def snapshot(root: str, *others: str) -> dict:
    paths = diffkit.Paths(dict({root: "<ROOT>"}, **{o: "<OTHER>" for o in others}))
    files = {k: v for k, v in diffkit.file_tree(root, paths).items() if not ACTIVATE.match(k)}
    return {"distributions": diffkit.distributions(root, paths), "files": files,
            "symlinks": symlinks(root, paths)}



def symlinks(root: str, paths: diffkit.Paths) -> Dict[str, str]:
    """Where each symlink under ``root`` points (symlink mode links into the cache)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != STASH]
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                found[os.path.relpath(path, root)] = paths.text(os.readlink(path))
    return found


def assert_same(engine_root: str, uv_root: str, *others: str) -> None:
    ours, theirs = snapshot(engine_root, *others), snapshot(uv_root, *others)
    assert ours == theirs, "engine vs fresh uv install:\n" + diffkit.differences(ours, theirs)


def run_python(venv: Venv, code: str, path: Optional[str] = None) -> str:
    """Run ``code`` with the environment's own Python (``path``: a --target folder to add)."""
    prefix = "import site; site.addsitedir(%r)\n" % path if path else ""
    done = subprocess.run([venv.python, "-c", prefix + code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def imported_version(venv: Venv, shape: Shape, path: Optional[str] = None) -> str:
    return run_python(venv, "import %s as m; print(m.VERSION)" % shape.module, path)


def command_output(root: str, shape: Shape) -> str:
    done = subprocess.run([os.path.join(root, "bin", shape.command)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def nlinks(folder: str) -> Dict[str, int]:
    """st_nlink of every regular file under ``folder`` (the stash left out)."""
    found = {}
    for base, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != STASH]
        for name in files:
            path = os.path.join(base, name)
            if not os.path.islink(path):
                found[os.path.relpath(path, folder)] = os.lstat(path).st_nlink
    return found


def record_rows(site: str, name: str) -> Tuple[List[str], List[List[str]]]:
    """The .dist-info folders of ``name`` in ``site``, and the RECORD rows of the only one."""
    infos = sorted(e for e in os.listdir(site)
                   if e.endswith(".dist-info") and e.split("-", 1)[0] == dist_name(name))
    if len(infos) != 1:
        return infos, []
    with open(os.path.join(site, infos[0], "RECORD")) as handle:
        return infos, [row for row in csv.reader(handle) if row]


def assert_complete(venv: Venv, shape: Shape) -> str:
    """Exactly one version of ``shape`` is installed, every RECORD file is there with its hash,
    its folder holds nothing else, and it imports; returns that version."""
    site = venv.site_packages
    infos, rows = record_rows(site, shape.name)
    assert len(infos) == 1, "dist-info folders: %s (site-packages: %s)" % (infos, sorted(os.listdir(site)))
    version = infos[0][len(dist_name(shape.name)) + 1: -len(".dist-info")]
    listed = set()
    for path, digest, _size in rows:
        full = os.path.normpath(os.path.join(site, path))
        listed.add(full)
        assert os.path.lexists(full), "%s is missing (RECORD of %s)" % (path, infos[0])
        if digest:
            algorithm, expected = digest.split("=", 1)
            with open(full, "rb") as handle:
                actual = base64.urlsafe_b64encode(hashlib.new(algorithm, handle.read()).digest()).rstrip(b"=")
            assert actual.decode() == expected, "%s does not match its RECORD hash" % path
    package = os.path.join(site, dist_name(shape.name))
    for base, dirs, files in os.walk(package):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            assert os.path.join(base, name) in listed, "%s is not %s's" % (os.path.join(base, name), infos[0])
    assert imported_version(venv, shape) == version
    if shape.command:
        assert command_output(venv.root, shape) == version
    return version


def uv_fresh(make_venv, world: World, *words: str, link_mode: str = "hardlink") -> Venv:
    """A new environment where the uv binary installed ``words``."""
    venv = make_venv()
    uv_binary(venv.python, world.url, "--link-mode", link_mode, *words)
    return venv


# ---------------------------------------------------------------------------------------------
# 1. Back and forth through the stash, then equal to a fresh uv install


@pytest.mark.parametrize("link_mode", LINK_MODES)
@pytest.mark.parametrize("shape_id", sorted(SHAPES))
def test_swap_back_from_the_stash_equals_a_fresh_uv_install(shape_id, link_mode, make_venv, world):
    shape = SHAPES[shape_id]
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "--link-mode", link_mode,  # noqa: E731
                                     "%s==%s" % (shape.name, version))
    install("1.0")
    stashed, restored = counts(venv.python)

    result = install("1.1")
    assert (result.installed, result.removed) == (((shape.name, "1.1"),), ((shape.name, "1.0"),))
    assert counts(venv.python) == (stashed + 1, restored)
    assert manifest_of(venv.root, shape.name, "1.0") is not None, manifests(venv.root)

    result = install("1.0")
    assert (result.installed, result.removed) == (((shape.name, "1.0"),), ((shape.name, "1.1"),))
    assert counts(venv.python) == (stashed + 2, restored + 1)
    assert manifest_of(venv.root, shape.name, "1.0") is None
    assert manifest_of(venv.root, shape.name, "1.1") is not None

    fresh = uv_fresh(make_venv, world, "%s==1.0" % shape.name, link_mode=link_mode)
    assert_same(venv.root, fresh.root)
    if link_mode == "copy":
        assert set(nlinks(venv.site_packages).values()) == {1}
        assert set(nlinks(os.path.join(venv.root, "bin")).values()) <= {1}
    assert venv.installed() == {shape.name: "1.0"}
    assert imported_version(venv, shape) == "1.0"
    if shape.command:
        assert command_output(venv.root, shape) == "1.0"
    if shape_id == "data":
        with open(os.path.join(venv.root, "share", "stashpkg_data", "info.txt")) as handle:
            assert handle.read() == "data of 1.0\n"


def test_a_version_stashed_in_one_link_mode_is_not_restored_for_another(make_venv, world):
    # Hard links into uv's cache must not come back for a call that asks for copies.
    venv = make_venv()
    engine(venv.python, world.url, "--link-mode", "hardlink", "%s==1.0" % MISC.name)
    engine(venv.python, world.url, "--link-mode", "hardlink", "%s==1.1" % MISC.name)
    _, restored = counts(venv.python)
    result = engine(venv.python, world.url, "--link-mode", "copy", "%s==1.0" % MISC.name)
    assert result.installed == ((MISC.name, "1.0"),)
    assert counts(venv.python)[1] == restored
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==1.0" % MISC.name, link_mode="copy").root)
    assert set(nlinks(venv.site_packages).values()) == {1}


def relinked(python: str) -> int:
    """Wheels the engine hard-linked again without uv's installer (rust/src/relink.rs)."""
    return uv_ffi.get_counters(python=python)["relinked"]


def hard_links(folder: str) -> Dict[str, bool]:
    return {path: count > 1 for path, count in nlinks(folder).items()}


def linked_then_replaced(shape: Shape, make_venv, world: World):
    """A new environment where uv hard-linked 1.0 of ``shape``, then 1.1 replaced it, with the
    stash emptied: installing 1.0 again links it. Returns the environment and its installer."""
    venv = make_venv()

    def install(version: str) -> uv_ffi.RunResult:
        return engine(venv.python, world.url, "--link-mode", "hardlink", "%s==%s" % (shape.name, version))

    install("1.0")
    install("1.1")
    uv_ffi.clear_stash(venv.python)
    return venv, install


#: Every path of these wheels' RECORD is inside site-packages; the others have scripts or data.
PLAIN_SHAPES = {"folder", "module", "pth"}


@pytest.mark.parametrize("shape_id", sorted(SHAPES))
def test_a_wheel_hard_linked_again_without_uv_installer_equals_uv(shape_id, make_venv, world):
    # The second hard-linked install of an archive into the same site folder makes the tree uv
    # made the first time, without uv's installer: the same files, contents, modes, RECORD,
    # INSTALLER and REQUESTED, and the same files hard links into uv's cache.
    shape = SHAPES[shape_id]
    venv, install = linked_then_replaced(shape, make_venv, world)
    before = relinked(venv.python)
    result = install("1.0")
    assert result.installed == ((shape.name, "1.0"),)
    assert relinked(venv.python) == before + (1 if shape_id in PLAIN_SHAPES else 0)

    fresh = uv_fresh(make_venv, world, "%s==1.0" % shape.name)
    assert_same(venv.root, fresh.root)
    assert hard_links(venv.site_packages) == hard_links(fresh.site_packages)
    assert venv.installed() == {shape.name: "1.0"}
    assert imported_version(venv, shape) == "1.0"
    # What was linked again is stashed and brought back like anything uv linked.
    install("1.1")
    install("1.0")
    assert_same(venv.root, fresh.root)


@pytest.mark.parametrize("shape_id", sorted(PLAIN_SHAPES))
def test_a_wheel_linked_again_into_a_new_target_folder_equals_uv(shape_id, make_venv, world, tmp_path):
    # A plain wheel makes the same tree in any site folder: uv links it into a first --target
    # folder, the engine links it into the next ones without uv's installer.
    shape = SHAPES[shape_id]
    venv = make_venv()
    first, second, fresh = (str(tmp_path / name) for name in ("first", "second", "fresh"))
    engine(venv.python, world.url, "--link-mode", "hardlink", "%s==1.0" % shape.name, target=first)
    engine(venv.python, world.url, "--link-mode", "hardlink", "%s==1.0" % shape.name, target=second)
    found = _native.call("view_get", {"target": second, "check": False})["counters"]
    assert found["relinked"] == 1
    # Nothing was stashed there: the engine's idle work leaves no stash folder (nor spares) in it.
    time.sleep(0.2)
    assert not os.path.exists(os.path.join(second, ".uv-ffi-stash"))

    uv_binary(venv.python, world.url, "--link-mode", "hardlink", "%s==1.0" % shape.name, target=fresh)
    assert_same(second, fresh, venv.root)
    assert hard_links(second) == hard_links(fresh)
    assert imported_version(venv, shape, path=second) == "1.0"


def test_a_wheel_is_not_linked_again_over_paths_that_exist(make_venv, world):
    # A top-level path already there (a file left behind): uv's installer merges, so it runs.
    shape = SHAPES["folder"]
    venv, install = linked_then_replaced(shape, make_venv, world)
    with open(os.path.join(venv.site_packages, "stashpkg_folder", "left-behind.txt"), "w") as handle:
        handle.write("kept\n")
    before = relinked(venv.python)
    install("1.0")
    assert relinked(venv.python) == before
    with open(os.path.join(venv.site_packages, "stashpkg_folder", "left-behind.txt")) as handle:
        assert handle.read() == "kept\n"
    assert venv.installed() == {shape.name: "1.0"}
    assert imported_version(venv, shape) == "1.0"


# ---------------------------------------------------------------------------------------------
# 2. --target


@pytest.mark.parametrize("shape_id", sorted(SHAPES))
def test_target_swap_back_from_the_stash_equals_a_fresh_uv_install(shape_id, make_venv, world, tmp_path):
    shape = SHAPES[shape_id]
    venv = make_venv()
    target, fresh = str(tmp_path / "target-a"), str(tmp_path / "target-b")
    install = lambda version: engine(venv.python, world.url, "%s==%s" % (shape.name, version),  # noqa: E731
                                     target=target)
    install("1.0")
    stashed, restored = counts(target=target)
    install("1.1")
    assert counts(target=target) == (stashed + 1, restored)
    assert manifest_of(target, shape.name, "1.0") is not None, manifests(target)
    assert not os.path.exists(stash_of(venv.root))

    install("1.0")
    assert counts(target=target) == (stashed + 2, restored + 1)

    uv_binary(venv.python, world.url, "%s==1.0" % shape.name, target=fresh)
    assert_same(target, fresh, venv.root)
    assert imported_version(venv, shape, path=target) == "1.0"
    assert venv.installed() == {}


# ---------------------------------------------------------------------------------------------
# 3. Namespace packages


def test_namespace_package_is_removed_as_uv_removes_it_not_stashed(make_venv, world):
    venv = make_venv()
    engine(venv.python, world.url, "stashpkg-ns-a==1.0", "stashpkg-ns-b==1.0")
    before = counts(venv.python)

    engine(venv.python, world.url, "stashpkg-ns-a==1.1")
    assert counts(venv.python) == before
    assert manifests(venv.root) == []
    assert_same(venv.root, uv_fresh(make_venv, world, "stashpkg-ns-a==1.1", "stashpkg-ns-b==1.0").root)

    engine(venv.python, world.url, "stashpkg-ns-a==1.0")
    assert counts(venv.python) == before
    assert_same(venv.root, uv_fresh(make_venv, world, "stashpkg-ns-a==1.0", "stashpkg-ns-b==1.0").root)
    assert run_python(venv, "import stashpkg_ns.a as a, stashpkg_ns.b as b; print(a.VERSION, b.VERSION)") == "1.0 1.0"


def test_a_stashed_folder_taken_by_another_distribution_is_not_restored(make_venv, world):
    # ns-a alone owns stashpkg_ns/ and is stashed whole; then ns-b makes that folder a shared
    # one: bringing ns-a 1.0 back must not move a folder over it.
    venv = make_venv()
    engine(venv.python, world.url, "stashpkg-ns-a==1.0")
    stashed, restored = counts(venv.python)
    engine(venv.python, world.url, "stashpkg-ns-a==1.1")
    assert counts(venv.python) == (stashed + 1, restored)
    engine(venv.python, world.url, "stashpkg-ns-b==1.0")

    engine(venv.python, world.url, "stashpkg-ns-a==1.0")
    assert counts(venv.python)[1] == restored
    assert_same(venv.root, uv_fresh(make_venv, world, "stashpkg-ns-a==1.0", "stashpkg-ns-b==1.0").root)


# ---------------------------------------------------------------------------------------------
# 4. A damaged entry is never restored


def _stashed_package_folder(root: str, shape: Shape) -> str:
    manifest = manifest_of(root, shape.name, "1.0")
    assert manifest is not None, manifests(root)
    item = [i for i in manifest["items"] if i["original"] == dist_name(shape.name)]
    assert len(item) == 1, manifest["items"]
    return os.path.join(stash_of(root), item[0]["stashed"])


def _rewrite_by_rename(folder: str) -> None:
    path = os.path.join(folder, "data.txt")
    with open(path + ".new", "w") as handle:
        handle.write("payload 1.0 but changed\n")
    os.rename(path + ".new", path)


def _append(folder: str) -> None:
    with open(os.path.join(folder, "data.txt"), "a") as handle:
        handle.write("appended\n")


def _same_size_same_mtime(folder: str) -> None:
    path = os.path.join(folder, "data.txt")
    info = os.stat(path)
    with open(path, "r+b") as handle:
        data = handle.read()
        handle.seek(0)
        handle.write(data.upper())
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def _delete(folder: str) -> None:
    os.remove(os.path.join(folder, "data.txt"))


def _extra_file(folder: str) -> None:
    with open(os.path.join(folder, "planted.py"), "w") as handle:
        handle.write("raise SystemExit('planted')\n")


def _extra_folder(folder: str) -> None:
    os.makedirs(os.path.join(folder, "planted"))
    with open(os.path.join(folder, "planted", "x.py"), "w") as handle:
        handle.write("")


# In-place edits run in copy mode only: in hardlink mode the stashed files are uv's cache's.
TAMPERING = [
    pytest.param(_rewrite_by_rename, "hardlink", id="rewrite-by-rename-hardlink"),
    pytest.param(_rewrite_by_rename, "copy", id="rewrite-by-rename-copy"),
    pytest.param(_append, "copy", id="append-copy"),
    pytest.param(_same_size_same_mtime, "copy", id="same-size-same-mtime-copy"),
    pytest.param(_delete, "hardlink", id="delete-hardlink"),
    pytest.param(_extra_file, "hardlink", id="extra-file-hardlink"),
    pytest.param(_extra_folder, "copy", id="extra-folder-copy"),
]


@pytest.mark.parametrize("tamper, link_mode", TAMPERING)
def test_a_damaged_entry_is_discarded_not_restored(tamper, link_mode, make_venv, world):
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "--link-mode", link_mode,  # noqa: E731
                                     "%s==%s" % (TAMPER.name, version))
    install("1.0")
    install("1.1")
    stashed, restored = counts(venv.python)
    entry_id = manifest_of(venv.root, TAMPER.name, "1.0")["items"][0]["stashed"].rsplit(".", 1)[0]
    tamper(_stashed_package_folder(venv.root, TAMPER))

    install("1.0")
    assert counts(venv.python) == (stashed + 1, restored)
    assert entries_with_prefix(venv.root, entry_id) == []
    assert manifest_of(venv.root, TAMPER.name, "1.0") is None
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==1.0" % TAMPER.name, link_mode=link_mode).root)
    assert assert_complete(venv, TAMPER) == "1.0"


@pytest.mark.parametrize("tamper, link_mode", TAMPERING)
def test_a_damaged_entry_is_discarded_after_swaps_back_and_forth(tamper, link_mode, make_venv, world):
    # After a few swaps an entry is judged by its folders' watches, not a stat per file
    # (rust/src/watch.rs): every change must still keep it from coming back.
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "--link-mode", link_mode,  # noqa: E731
                                     "%s==%s" % (TAMPER.name, version))
    for version in ("1.0", "1.1", "1.0", "1.1", "1.0", "1.1"):
        install(version)
    stashed, restored = counts(venv.python)
    assert restored >= 4
    tamper(_stashed_package_folder(venv.root, TAMPER))

    install("1.0")
    assert counts(venv.python) == (stashed + 1, restored)
    assert manifest_of(venv.root, TAMPER.name, "1.0") is None
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==1.0" % TAMPER.name, link_mode=link_mode).root)
    assert assert_complete(venv, TAMPER) == "1.0"


@pytest.mark.parametrize("edit, link_mode", [
    pytest.param(_append, "copy", id="append-copy"),
    pytest.param(_same_size_same_mtime, "copy", id="same-size-same-mtime-copy"),
    pytest.param(_rewrite_by_rename, "hardlink", id="rewrite-by-rename-hardlink"),
    pytest.param(_delete, "hardlink", id="delete-hardlink"),
])
def test_a_change_made_while_installed_after_swaps_is_not_brought_back(edit, link_mode, make_venv, world):
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "--link-mode", link_mode,  # noqa: E731
                                     "%s==%s" % (TAMPER.name, version))
    for version in ("1.0", "1.1", "1.0", "1.1", "1.0"):
        install(version)
    edit(os.path.join(venv.site_packages, dist_name(TAMPER.name)))
    install("1.1")
    _, restored = counts(venv.python)
    install("1.0")
    assert counts(venv.python)[1] == restored
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==1.0" % TAMPER.name, link_mode=link_mode).root)
    assert assert_complete(venv, TAMPER) == "1.0"


def test_a_damaged_top_level_file_entry_is_discarded(make_venv, world):
    shape = SHAPES["module"]
    venv = make_venv()
    engine(venv.python, world.url, "--link-mode", "copy", "%s==1.0" % shape.name)
    engine(venv.python, world.url, "--link-mode", "copy", "%s==1.1" % shape.name)
    stashed, restored = counts(venv.python)
    item = [i for i in manifest_of(venv.root, shape.name, "1.0")["items"] if i["original"] == "stashpkg_module.py"]
    with open(os.path.join(stash_of(venv.root), item[0]["stashed"]), "a") as handle:
        handle.write("VERSION = 'tampered'\n")

    engine(venv.python, world.url, "--link-mode", "copy", "%s==1.0" % shape.name)
    assert counts(venv.python)[1] == restored
    assert imported_version(venv, shape) == "1.0"
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==1.0" % shape.name, link_mode="copy").root)


# ---------------------------------------------------------------------------------------------
# 5. Only exactly the same wheel is restored


@pytest.fixture
def second_index(world, tmp_path):
    """Another index on 127.0.0.1 serving a different stashpkg-alt 1.0 under the same file name."""
    folder = str(tmp_path / "second-index")
    os.makedirs(folder)
    build_wheel(folder, ALT.name, "1.0", shape_files(ALT, "1.0", salt="SECOND = True\n"), ALT.console_scripts)
    assert os.path.basename(world.wheels[(ALT.name, "1.0")]) in os.listdir(folder)
    server = IndexServer(folder, str(tmp_path / "second-index.log"))
    yield server
    server.stop()


def test_a_different_wheel_with_the_same_file_name_is_not_restored(make_venv, world, second_index):
    venv = make_venv()
    engine(venv.python, world.url, "%s==1.0" % ALT.name)
    engine(venv.python, world.url, "%s==1.1" % ALT.name)
    stashed, restored = counts(venv.python)
    assert manifest_of(venv.root, ALT.name, "1.0") is not None

    engine(venv.python, second_index.url, "%s==1.0" % ALT.name)
    assert counts(venv.python) == (stashed + 1, restored)
    assert run_python(venv, "import stashpkg_alt as m; print(m.SECOND)") == "True"
    assert assert_complete(venv, ALT) == "1.0"
    fresh = make_venv()
    uv_binary(fresh.python, second_index.url, "%s==1.0" % ALT.name)
    assert_same(venv.root, fresh.root)


def test_a_local_wheel_install_is_not_stashed(make_venv, world):
    venv = make_venv()
    engine(venv.python, world.url, world.wheels[(LOCAL.name, "1.0")])
    before = counts(venv.python)
    engine(venv.python, world.url, "%s==1.1" % LOCAL.name)
    assert counts(venv.python) == before
    assert manifests(venv.root) == []
    engine(venv.python, world.url, "%s==1.0" % LOCAL.name)
    assert counts(venv.python)[1] == before[1]
    assert assert_complete(venv, LOCAL) == "1.0"


def test_an_index_install_replaced_by_a_local_wheel_is_not_stashed_as_the_index_wheel(make_venv, world, tmp_path):
    # The engine installs the index's 1.0, then a local wheel with the same file name and other
    # content replaces it: what a later swap moves out is the local wheel's, not the index's.
    local = build_wheel(str(tmp_path / "local"), SWITCH.name, "1.0",
                        shape_files(SWITCH, "1.0", salt="LOCAL = True\n"), SWITCH.console_scripts)
    venv = make_venv()
    engine(venv.python, world.url, "%s==1.0" % SWITCH.name)
    engine(venv.python, world.url, local)
    assert run_python(venv, "import stashpkg_switch as m; print(m.LOCAL)") == "True"
    before = counts(venv.python)

    engine(venv.python, world.url, "%s==1.1" % SWITCH.name)
    assert counts(venv.python) == before, "the local wheel's files were stashed"
    engine(venv.python, world.url, "%s==1.0" % SWITCH.name)
    assert run_python(venv, "import stashpkg_switch as m; print(hasattr(m, 'LOCAL'))") == "False"
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==1.0" % SWITCH.name).root)


# ---------------------------------------------------------------------------------------------
# 6. A version another tool reinstalled is not the engine's to stash


def test_a_version_the_uv_binary_reinstalled_is_not_stashed(make_venv, world):
    venv = make_venv()
    engine(venv.python, world.url, "%s==1.0" % OUTSIDE.name)
    uv_binary(venv.python, world.url, "--reinstall", "%s==1.0" % OUTSIDE.name)
    before = counts(venv.python)

    engine(venv.python, world.url, "%s==1.1" % OUTSIDE.name)
    assert counts(venv.python) == before
    assert manifests(venv.root) == []
    assert assert_complete(venv, OUTSIDE) == "1.1"


# ---------------------------------------------------------------------------------------------
# 7. Bounds


def stash_is_owned(root: str) -> bool:
    """Whether the stash holds nothing but manifests, their entries' paths and the journal."""
    owned = set()
    for name in manifests(root):
        owned.add(name)
        manifest = manifest_of_file(root, name)
        if manifest is None:
            return False
        owned.update(item["stashed"] for item in manifest["items"])
    return set(os.listdir(stash_of(root))) - {"journal"} == owned


def manifest_of_file(root: str, name: str) -> Optional[dict]:
    try:
        with open(os.path.join(stash_of(root), name)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def wait_for_trim(root: str, bound: int = 16) -> None:
    """The engine trims the stash on its own thread once a call is answered (an entry's
    manifest first, then its files): wait until it is done (the test fails below if it never
    happens)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (len(manifests(root)) <= bound and stash_is_owned(root)):
        time.sleep(0.01)


def stray_entry(venv) -> str:
    """Stashed paths no manifest accounts for, as a process leaves them between a swap and its
    idle work (the engine writes manifests when idle)."""
    stray = os.path.join(stash_of(venv.root), "%s-0.9-12345abc0.0" % ALT.name)
    os.makedirs(os.path.join(stray, "inner"))
    return stray


def test_paths_no_manifest_accounts_for_are_left_while_their_process_may_live(make_venv, world):
    # Another process that is alive writes its manifests when its engine is next idle: a tidy
    # in the meantime must not remove what it stashed (a minute's grace).
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "%s==%s" % (ALT.name, version))  # noqa: E731
    install("1.0")
    install("1.1")
    stray = stray_entry(venv)
    install("1.0")  # from the stash; the stash is tidied when the engine is idle
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and manifest_of(venv.root, ALT.name, "1.1") is None:
        time.sleep(0.01)
    assert manifest_of(venv.root, ALT.name, "1.1") is not None
    uv_ffi.get_counters()  # the idle work (manifests, then the tidy) is done
    time.sleep(0.2)
    assert os.path.isdir(os.path.join(stray, "inner"))
    assert assert_complete(venv, ALT) == "1.0"


def test_paths_no_manifest_accounts_for_are_swept_when_the_stash_is_tidied(make_venv, world, monkeypatch):
    # A process that ends between a swap and its idle work leaves the version it stashed without
    # a manifest (the engine writes manifests when idle): a later tidy removes such paths once
    # they are older than the grace left to a live process (none here, once they are made).
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "%s==%s" % (ALT.name, version))  # noqa: E731
    install("1.0")
    install("1.1")
    stray = stray_entry(venv)
    partial = os.path.join(stash_of(venv.root), "%s-0.9-12345abc0.partial" % ALT.name)
    with open(partial, "w") as handle:
        handle.write("{")
    monkeypatch.setenv("UV_FFI_TEST_ORPHAN_AGE_MS", "0")
    install("1.0")  # from the stash; the stash is tidied when the engine is idle
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (os.path.exists(stray) or os.path.exists(partial)):
        time.sleep(0.01)
    assert not os.path.exists(stray) and not os.path.exists(partial)
    assert stash_is_owned(venv.root)
    assert manifest_of(venv.root, ALT.name, "1.1") is not None
    assert assert_complete(venv, ALT) == "1.0"
    assert install("1.1").installed == ((ALT.name, "1.1"),)
    assert assert_complete(venv, ALT) == "1.1"


def test_the_stash_keeps_the_sixteen_most_recent_entries(make_venv, world):
    venv = make_venv()
    for version in MANY_VERSIONS:
        engine(venv.python, world.url, "%s==%s" % (MANY, version))
    wait_for_trim(venv.root)
    found = manifests(venv.root)
    assert len(found) == 16, found
    kept = {name.split("-")[2] for name in found}
    assert kept == set(MANY_VERSIONS[1:-1]), "not the most recent: %s" % sorted(kept)
    # Nothing in the stash but the kept entries and their manifests.
    owned = set(found)
    for name in found:
        with open(os.path.join(stash_of(venv.root), name)) as handle:
            owned.update(item["stashed"] for item in json.load(handle)["items"])
    assert set(os.listdir(stash_of(venv.root))) - {"journal"} == owned
    assert journal_is_clear(venv.root)

    _, restored = counts(venv.python)
    engine(venv.python, world.url, "%s==1.0" % MANY)  # dropped: linked again
    assert counts(venv.python)[1] == restored
    # 1.17 went in, so 1.1 went out; 1.2 is now the oldest entry kept, and comes back.
    wait_for_trim(venv.root)
    assert {name.split("-")[2] for name in manifests(venv.root)} == set(MANY_VERSIONS[2:])
    engine(venv.python, world.url, "%s==1.2" % MANY)
    assert counts(venv.python)[1] == restored + 1
    assert venv.installed() == {MANY: "1.2"}


# ---------------------------------------------------------------------------------------------
# 8. clear_stash and UV_FFI_STASH=0


def test_clear_stash_empties_the_folder_once(make_venv, world):
    venv = make_venv()
    engine(venv.python, world.url, "%s==1.0" % MISC.name)
    engine(venv.python, world.url, "%s==1.1" % MISC.name)
    assert os.path.isdir(stash_of(venv.root))

    assert uv_ffi.clear_stash(venv.python) is True
    # The folder and its (empty) journal stay for the next swap.
    assert os.listdir(stash_of(venv.root)) == ["journal"] and journal_is_clear(venv.root)
    assert uv_ffi.clear_stash(venv.python) is False

    _, restored = counts(venv.python)
    engine(venv.python, world.url, "%s==1.0" % MISC.name)
    assert counts(venv.python)[1] == restored
    assert assert_complete(venv, MISC) == "1.0"


def test_clear_stash_of_a_target_folder(make_venv, world, tmp_path):
    venv, target = make_venv(), str(tmp_path / "target")
    engine(venv.python, world.url, "%s==1.0" % MISC.name, target=target)
    engine(venv.python, world.url, "%s==1.1" % MISC.name, target=target)
    assert manifests(target) != []
    assert uv_ffi.clear_stash(target=target) is True
    assert manifests(target) == [] and os.listdir(stash_of(target)) == ["journal"]
    assert uv_ffi.clear_stash(target=target) is False


def test_uv_ffi_stash_0_turns_stashing_off(make_venv, world, monkeypatch):
    monkeypatch.setenv("UV_FFI_STASH", "0")
    venv = make_venv()
    engine(venv.python, world.url, "%s==1.0" % MISC.name)
    before = counts(venv.python)
    engine(venv.python, world.url, "%s==1.1" % MISC.name)
    engine(venv.python, world.url, "%s==1.0" % MISC.name)
    assert counts(venv.python) == before
    assert not os.path.exists(stash_of(venv.root))
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==1.0" % MISC.name).root)


# ---------------------------------------------------------------------------------------------
# 8b. A swap asked again is made by renames on the caller's thread (rust/src/fast_swap.rs)


def swapped_here(python: Optional[str] = None, target: Optional[str] = None) -> int:
    if target is None:
        return uv_ffi.get_counters(python=python)["swapped_here"]
    return _native.call("view_get", {"target": target, "check": False})["counters"]["swapped_here"]


def settle() -> None:
    """Let the cache folders a plan reads grow older than 50 ms: from then on plans are kept
    (rust/src/replan.rs), and a swap asked again can be made here."""
    time.sleep(0.15)


def ready_to_swap_here(install) -> None:
    """Swap 1.0 -> 1.1 -> 1.0, let the cache settle, and ask both questions once more, so that
    each has a kept resolution and plan for the view the other leaves."""
    for version in ("1.0", "1.1", "1.0"):
        install(version)
    settle()
    install("1.1")
    install("1.0")


def ready_venv(make_venv, world: World, name: str):
    """A new environment where ``name``'s swaps are ready to be made here, and its install."""
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "%s==%s" % (name, version))  # noqa: E731
    ready_to_swap_here(install)
    return venv, install


def assert_left_to_the_engine_thread(venv: Venv, make_venv, world: World, shape: Shape, before: int,
                                     version: str = "1.0") -> None:
    """No swap was made here since ``before``, and the environment equals uv's install of
    ``version``, complete."""
    assert swapped_here(venv.python) == before
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==%s" % (shape.name, version)).root)
    assert assert_complete(venv, shape) == version


def fast_swap_cases():
    cases = [pytest.param(shape_id, "hardlink", id=shape_id + "-hardlink") for shape_id in sorted(SHAPES)]
    return cases + [pytest.param("folder", mode, id="folder-" + mode) for mode in ("copy", "symlink")]


@pytest.mark.parametrize("shape_id, link_mode", fast_swap_cases())
def test_a_swap_asked_again_is_made_here_and_equals_a_fresh_uv_install(shape_id, link_mode, make_venv, world):
    shape = SHAPES[shape_id]
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "--link-mode", link_mode,  # noqa: E731
                                     "%s==%s" % (shape.name, version))
    ready_to_swap_here(install)
    before, (stashed, restored) = swapped_here(venv.python), counts(venv.python)

    for old, new in (("1.0", "1.1"), ("1.1", "1.0")):
        result = install(new)
        assert (result.installed, result.removed) == (((shape.name, new),), ((shape.name, old),))
        assert "renames" in dict(result.timings_us), result.timings_us
        assert venv.installed() == {shape.name: new}
    assert swapped_here(venv.python) == before + 2
    assert counts(venv.python) == (stashed + 2, restored + 2)
    assert journal_is_clear(venv.root)
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==1.0" % shape.name, link_mode=link_mode).root)
    assert imported_version(venv, shape) == "1.0"
    if shape.command:
        assert command_output(venv.root, shape) == "1.0"
    # Satisfied now: answered as before, nothing moved.
    assert install("1.0").satisfied
    assert swapped_here(venv.python) == before + 2


@pytest.mark.parametrize("shape_id", sorted(SHAPES))
def test_a_version_not_in_the_stash_is_linked_again_here_and_equals_a_fresh_uv_install(
        shape_id, make_venv, world):
    # The stash emptied: a swap asked again links the version it brings in again, without uv's
    # installer, on the caller's thread (plain wheels); the version going out goes to the stash.
    shape = SHAPES[shape_id]
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "--link-mode", "hardlink",  # noqa: E731
                                     "%s==%s" % (shape.name, version))
    ready_to_swap_here(install)
    uv_ffi.clear_stash(venv.python)
    before, (stashed, restored), linked = swapped_here(venv.python), counts(venv.python), relinked(venv.python)

    result = install("1.1")
    assert (result.installed, result.removed) == (((shape.name, "1.1"),), ((shape.name, "1.0"),))
    plain = shape_id in PLAIN_SHAPES
    assert ("relink" in dict(result.timings_us)) == plain, result.timings_us
    assert swapped_here(venv.python) == before + (1 if plain else 0)
    assert relinked(venv.python) == linked + (1 if plain else 0)
    assert counts(venv.python) == (stashed + 1, restored)
    assert journal_is_clear(venv.root)
    fresh = uv_fresh(make_venv, world, "%s==1.1" % shape.name)
    assert_same(venv.root, fresh.root)
    assert hard_links(venv.site_packages) == hard_links(fresh.site_packages)
    assert imported_version(venv, shape) == "1.1"
    # What was linked here goes to the stash and comes back like anything uv linked.
    assert install("1.0").installed == ((shape.name, "1.0"),)
    assert install("1.1").installed == ((shape.name, "1.1"),)
    assert counts(venv.python) == (stashed + 3, restored + 2)
    assert_same(venv.root, fresh.root)


def spares_used(python: str) -> int:
    """Folders and files trees linked again took from spares made ahead (rust/src/spare.rs)."""
    return uv_ffi.get_counters(python=python)["spares_used"]


def test_a_tree_linked_again_from_spares_equals_a_fresh_uv_install(make_venv, world):
    # A tree linked again takes its folders and written files from spares the engine made while
    # idle (on the same filesystem); the result is still exactly uv's.
    shape = SHAPES["folder"]
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "--link-mode", "hardlink",  # noqa: E731
                                     "%s==%s" % (shape.name, version))
    ready_to_swap_here(install)
    # Each swap asks for spares (the first on a filesystem gets none, and its stash holds them
    # from the engine's next idle work; a stash removed meanwhile hands that on to the next).
    version, used = "1.0", 0
    for _ in range(4):
        version = "1.1" if version == "1.0" else "1.0"
        uv_ffi.clear_stash(venv.python)
        before = spares_used(venv.python)
        result = install(version)
        assert "relink" in dict(result.timings_us), result.timings_us
        used = spares_used(venv.python) - before
        if used:
            break
        time.sleep(0.3)  # the engine's idle work makes them
    # The package's two folders and its dist-info folder, and RECORD, INSTALLER, REQUESTED.
    assert used == 6
    fresh = uv_fresh(make_venv, world, "%s==%s" % (shape.name, version))
    assert_same(venv.root, fresh.root)
    assert hard_links(venv.site_packages) == hard_links(fresh.site_packages)
    # Folders and RECORD too have uv's permission bits (the comparison above leaves them out).
    assert modes(venv.site_packages, "stashpkg_folder") == modes(fresh.site_packages, "stashpkg_folder")
    assert imported_version(venv, shape) == version


def modes(site: str, prefix: str) -> Dict[str, int]:
    """The permission bits of every path under ``site`` whose top-level name starts with ``prefix``."""
    found = {}
    for top in os.listdir(site):
        if top.startswith(prefix):
            for folder, dirs, files in os.walk(os.path.join(site, top)):
                for name in [""] + dirs + files:
                    path = os.path.join(folder, name) if name else folder
                    found[os.path.relpath(path, site)] = os.lstat(path).st_mode & 0o7777
    return found


def test_a_target_swap_asked_again_is_made_here_and_equals_a_fresh_uv_install(make_venv, world, tmp_path):
    shape = SHAPES["script"]
    venv = make_venv()
    target, fresh = str(tmp_path / "target-a"), str(tmp_path / "target-b")
    install = lambda version: engine(venv.python, world.url, "%s==%s" % (shape.name, version),  # noqa: E731
                                     target=target)
    ready_to_swap_here(install)
    before = swapped_here(target=target)
    assert install("1.1").installed == ((shape.name, "1.1"),)
    assert install("1.0").installed == ((shape.name, "1.0"),)
    assert swapped_here(target=target) == before + 2
    uv_binary(venv.python, world.url, "%s==1.0" % shape.name, target=fresh)
    assert_same(target, fresh, venv.root)
    assert imported_version(venv, shape, path=target) == "1.0"


def test_a_swap_asked_again_waits_for_the_environment_lock_as_uv_does(make_venv, world):
    venv, install = ready_venv(make_venv, world, MISC.name)
    before = swapped_here(venv.python)
    holder = open(os.path.join(venv.root, ".lock"), "a+")
    fcntl.flock(holder, fcntl.LOCK_EX)
    outcome: Dict[str, object] = {}
    worker = threading.Thread(target=lambda: outcome.update(result=install("1.1")))
    try:
        worker.start()
        worker.join(0.5)
        # Another process holds the lock: the call waits for it, on the engine thread.
        assert worker.is_alive()
        assert venv.installed() == {MISC.name: "1.0"}
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        holder.close()
    worker.join(30)
    assert outcome["result"].installed == ((MISC.name, "1.1"),)
    assert_left_to_the_engine_thread(venv, make_venv, world, MISC, before, "1.1")


def test_a_damaged_entry_is_not_restored_by_a_swap_asked_again(make_venv, world):
    venv, install = ready_venv(make_venv, world, TAMPER.name)
    install("1.1")  # made here: 1.0 goes to the stash
    before, (stashed, restored) = swapped_here(venv.python), counts(venv.python)
    _extra_file(_stashed_package_folder(venv.root, TAMPER))

    install("1.0")
    assert counts(venv.python) == (stashed + 1, restored)
    assert_left_to_the_engine_thread(venv, make_venv, world, TAMPER, before)


def test_a_version_another_tool_installed_is_not_swapped_here(make_venv, world):
    venv, install = ready_venv(make_venv, world, SWITCH.name)
    before = swapped_here(venv.python)
    # The uv binary replaces 1.0 with its own 1.1; asked for 1.0, the engine sees a 1.1 it did not
    # install (not one it may stash) and leaves the swap to uv's uninstall and install.
    uv_binary(venv.python, world.url, "%s==1.1" % SWITCH.name)
    assert install("1.0").installed == ((SWITCH.name, "1.0"),)
    assert_left_to_the_engine_thread(venv, make_venv, world, SWITCH, before)


def test_expired_index_pages_leave_the_swap_to_the_engine_thread(make_venv, world):
    venv, install = ready_venv(make_venv, world, ALT.name)
    before = swapped_here(venv.python)
    ttl = policy.get_index_ttl()
    policy.set_index_ttl(0)
    try:
        assert install("1.1").installed == ((ALT.name, "1.1"),)
        assert install("1.0").installed == ((ALT.name, "1.0"),)
    finally:
        policy.set_index_ttl(ttl)
    assert swapped_here(venv.python) == before
    assert assert_complete(venv, ALT) == "1.0"


# ---------------------------------------------------------------------------------------------
# 9. A swap killed half-way leaves the old version whole


CHILD = textwrap.dedent(
    """
    import sys, time, uv_ffi
    python, url, cache, name, *versions = sys.argv[1:]
    for i, version in enumerate(versions):
        if version == "settle":
            time.sleep(0.15)  # the cache folders settle: plans are kept from now on
            continue
        if i == len(versions) - 1:
            print("SWAPPING %d" % uv_ffi.get_counters(python=python)["swapped_here"], flush=True)
        uv_ffi.install(["pip", "install", "--python", python, "-i", url, "--cache-dir", cache,
                        "%s==%s" % (name, version)])
    print("DONE", flush=True)
    """
)

#: The swap back to 1.0 is six renames (bin script, .dist-info, package folder: 1.1's out, then
#: 1.0's in), each followed by a 300 ms pause, then the journal goes: these delays fall after the
#: first 1..6 renames, and after the end (the child has finished: the control case).
KILL_DELAYS = [0.15, 0.45, 0.75, 1.05, 1.35, 1.65, 2.5]


def _kill_mid_swap(venv: Venv, world: World, delay: float, versions=("1.0", "1.1", "1.0")) -> None:
    """In a child process, install ``versions`` of stashpkg-crash in turn, with a 300 ms pause
    after each rename; SIGKILL it ``delay`` seconds after it starts the last one."""
    env = dict(os.environ, UV_FFI_TEST_STASH_PAUSE_MS="300")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, venv.python, world.url, cache_dir(), CRASH.name, *versions],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=world.root,
    )
    try:
        line = child.stdout.readline()
        assert line.startswith("SWAPPING "), "child: %r %s" % (line, child.stderr.read())
        if "settle" in versions:
            assert int(line.split()[1]) >= 1, "no swap before the last was made by renames here"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)  # the last delay lets the swap finish first
        assert child.wait(timeout=30) in (0, -signal.SIGKILL), child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()


@pytest.mark.parametrize("delay", KILL_DELAYS)
def test_killed_swap_from_the_stash_is_undone_on_recovery(delay, make_venv, world):
    venv = make_venv()
    _kill_mid_swap(venv, world, delay)
    # clear_stash recovers an interrupted swap before emptying the stash: one version is left,
    # complete (the old one, or the new one if the swap had finished).
    uv_ffi.clear_stash(venv.python)
    assert assert_complete(venv, CRASH) in ("1.0", "1.1")


@pytest.mark.parametrize("delay", [0.15, 0.45, 0.75])
def test_killed_while_moving_the_old_version_out_is_undone_on_recovery(delay, make_venv, world):
    # 1.0 -> 1.1: 1.1 is linked by uv; the journal covers the three renames moving 1.0 out.
    venv = make_venv()
    _kill_mid_swap(venv, world, delay, versions=("1.0", "1.1"))
    uv_ffi.clear_stash(venv.python)
    assert assert_complete(venv, CRASH) == "1.0"


@pytest.mark.parametrize("delay", KILL_DELAYS)
def test_killed_swap_then_the_same_swap_again(delay, make_venv, world):
    venv = make_venv()
    _kill_mid_swap(venv, world, delay)
    # The host tries again: this install finds the journal and must end with 1.0, whole.
    engine(venv.python, world.url, "%s==1.0" % CRASH.name)
    assert assert_complete(venv, CRASH) == "1.0"
    assert journal_is_clear(venv.root)


@pytest.mark.parametrize("delay", KILL_DELAYS)
def test_killed_swap_then_the_old_version_again(delay, make_venv, world):
    venv = make_venv()
    _kill_mid_swap(venv, world, delay)
    engine(venv.python, world.url, "%s==1.1" % CRASH.name)
    assert assert_complete(venv, CRASH) == "1.1"


#: Swaps until the same questions come back with plans kept: the last swap is made by renames
#: on the caller's thread (rust/src/fast_swap.rs), as the one before it was.
FAST_SWAPS = ("1.0", "1.1", "1.0", "settle", "1.1", "1.0", "1.1", "1.0")


@pytest.mark.parametrize("delay", [0.15, 0.75, 1.35, 2.5])
def test_killed_swap_made_here_is_undone_on_recovery(delay, make_venv, world):
    venv = make_venv()
    _kill_mid_swap(venv, world, delay, versions=FAST_SWAPS)
    uv_ffi.clear_stash(venv.python)
    assert assert_complete(venv, CRASH) in ("1.0", "1.1")


@pytest.mark.parametrize("delay", [0.45, 1.05])
def test_killed_swap_made_here_then_the_same_swap_again(delay, make_venv, world):
    venv = make_venv()
    _kill_mid_swap(venv, world, delay, versions=FAST_SWAPS)
    engine(venv.python, world.url, "%s==1.0" % CRASH.name)
    assert assert_complete(venv, CRASH) == "1.0"
    assert journal_is_clear(venv.root)


@pytest.mark.parametrize("delay", [1.65, 2.5])
def test_killed_swap_retried_is_not_undone_by_a_later_unrelated_install(delay, make_venv, world):
    venv = make_venv()
    _kill_mid_swap(venv, world, delay)
    engine(venv.python, world.url, "%s==1.0" % CRASH.name)
    assert assert_complete(venv, CRASH) == "1.0"
    result = engine(venv.python, world.url, "%s==1.0" % MISC.name)
    assert (result.installed, result.removed) == (((MISC.name, "1.0"),), ())
    assert venv.installed() == {CRASH.name: "1.0", MISC.name: "1.0"}, "installing %s changed %s" % (
        MISC.name, CRASH.name)
    assert assert_complete(venv, CRASH) == "1.0"


def test_a_killed_swap_found_while_the_environment_is_locked_is_undone_once_the_lock_is_free(make_venv, world):
    # The check before the lock skips a journal while another process holds the environment's
    # lock (it may be mid-swap); the call then waits for the lock, undoes the journal under it
    # and ends with the version asked for, whole.
    venv = make_venv()
    _kill_mid_swap(venv, world, 0.75)
    journal = os.path.join(stash_of(venv.root), "journal")
    assert os.path.getsize(journal) > 0, "the kill did not land mid-swap"
    holder = open(os.path.join(venv.root, ".lock"), "a+")
    fcntl.flock(holder, fcntl.LOCK_EX)
    outcome: Dict[str, object] = {}

    def install() -> None:
        try:
            outcome["result"] = engine(venv.python, world.url, "%s==1.1" % CRASH.name)
        except Exception as exc:  # reported below
            outcome["error"] = exc

    worker = threading.Thread(target=install)
    try:
        worker.start()
        time.sleep(0.5)  # the call finds the journal, the lock held, and waits for the lock
        assert worker.is_alive(), outcome
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        holder.close()
        worker.join(60)
    assert "error" not in outcome, outcome
    assert assert_complete(venv, CRASH) == "1.1"
    assert journal_is_clear(venv.root)


# ---------------------------------------------------------------------------------------------
# 10. No journal is left behind (the file stays, empty: emptying it is cheaper than removing
# and creating it on every swap)


def journal_is_clear(root: str) -> bool:
    journal = os.path.join(stash_of(root), "journal")
    return not os.path.exists(journal) or os.path.getsize(journal) == 0


def test_no_journal_is_left_after_a_swap_from_the_stash(make_venv, world):
    venv = make_venv()
    engine(venv.python, world.url, "%s==1.0" % MISC.name)
    engine(venv.python, world.url, "%s==1.1" % MISC.name)
    assert os.path.isdir(stash_of(venv.root)) and journal_is_clear(venv.root)
    _, restored = counts(venv.python)
    engine(venv.python, world.url, "%s==1.0" % MISC.name)
    assert counts(venv.python)[1] == restored + 1
    assert journal_is_clear(venv.root)
    assert sorted(set(os.listdir(stash_of(venv.root))) - {"journal"}) == sorted(
        [m for m in manifests(venv.root)]
        + [i["stashed"] for i in manifest_of(venv.root, MISC.name, "1.1")["items"]]
    )


# ---------------------------------------------------------------------------------------------
# What is stashed is what the wheel installed, and only that


def test_modules_imported_before_the_swaps_leave_no_bytecode_behind(make_venv, world):
    shape = SHAPES["folder"]
    venv = make_venv()
    _, restored = counts(venv.python)
    for version in ("1.0", "1.1", "1.0"):
        engine(venv.python, world.url, "%s==%s" % (shape.name, version))
        assert imported_version(venv, shape) == version
    assert counts(venv.python)[1] == restored + 1
    fresh = uv_fresh(make_venv, world, "%s==1.0" % shape.name)
    assert imported_version(fresh, shape) == "1.0"
    assert_same(venv.root, fresh.root)


def test_compiled_bytecode_in_record_is_not_stashed(make_venv, world):
    venv = make_venv()
    before = counts(venv.python)
    for version in ("1.0", "1.1", "1.0"):
        engine(venv.python, world.url, "--compile-bytecode", "%s==%s" % (BYTECODE.name, version))
    assert counts(venv.python) == before
    fresh = make_venv()
    uv_binary(fresh.python, world.url, "--compile-bytecode", "%s==1.0" % BYTECODE.name)
    assert_same(venv.root, fresh.root)


def _edit_in_place(path: str) -> None:
    with open(path, "a") as handle:
        handle.write("edited while installed\n")


def _edit_by_rename(path: str) -> None:
    with open(path + ".new", "w") as handle:
        handle.write("edited while installed\n")
    os.rename(path + ".new", path)


# In-place edits in copy mode only: in hardlink mode the installed files are uv's cache's.
EDITS = [
    pytest.param(_edit_in_place, "copy", id="edit-in-place-copy"),
    pytest.param(_edit_by_rename, "hardlink", id="edit-by-rename-hardlink"),
    pytest.param(os.remove, "hardlink", id="delete-hardlink"),
]


@pytest.mark.parametrize("edit, link_mode", EDITS)
def test_a_file_changed_while_installed_is_not_brought_back(edit, link_mode, make_venv, world):
    # The swap back installs "exactly that wheel": its files as the wheel has them, as uv would.
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "--link-mode", link_mode,  # noqa: E731
                                     "%s==%s" % (EDITED.name, version))
    install("1.0")
    edit(os.path.join(venv.site_packages, dist_name(EDITED.name), "data.txt"))
    install("1.1")
    install("1.0")
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==1.0" % EDITED.name, link_mode=link_mode).root)
    assert assert_complete(venv, EDITED) == "1.0"


@pytest.mark.parametrize("edit", [None, _edit_by_rename, os.remove], ids=["untouched", "edit-by-rename", "delete"])
def test_a_version_hard_linked_again_is_stashed_from_what_is_on_disk(edit, make_venv, world):
    # The second time uv hard-links an archive, the engine takes the stamps of the files it
    # linked from the first time (no stat per file): a file replaced while installed must still
    # keep that version from coming back, and an untouched one must still come back.
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "%s==%s" % (EDITED.name, version))  # noqa: E731
    install("1.0")
    install("1.1")
    uv_ffi.clear_stash(venv.python)
    install("1.0")  # linked by uv again, from the same archive
    if edit is not None:
        edit(os.path.join(venv.site_packages, dist_name(EDITED.name), "data.txt"))
    install("1.1")
    _, restored = counts(venv.python)
    install("1.0")
    assert counts(venv.python)[1] == restored + (1 if edit is None else 0)
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==1.0" % EDITED.name).root)
    assert assert_complete(venv, EDITED) == "1.0"


# ---------------------------------------------------------------------------------------------
# 11. Settled folders: a folder whose modification time is old enough is not read again while
# that time holds (adding or removing a name moves it); every change still shows.

#: Longer than the engine's settling time for a folder's modification time (100 ms).
SETTLE_S = 0.3
FOLDER_SIZE = 2 ** 64 - 1


def settled_folders(root: str, name: str, version: str) -> List[str]:
    """The folders of a stash entry whose stamp carries a settled modification time."""
    manifest = manifest_of(root, name, version)
    assert manifest is not None, manifests(root)
    return [key for key, stamp in manifest["files"].items()
            if stamp["size"] == FOLDER_SIZE and stamp["mtime_ns"] != 0]


@pytest.mark.parametrize("tamper", [_extra_file, _extra_folder, _delete])
def test_a_change_to_a_settled_entry_is_seen(tamper, make_venv, world):
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "%s==%s" % (TAMPER.name, version))  # noqa: E731
    install("1.0")
    time.sleep(SETTLE_S)
    install("1.1")  # 1.0 goes to the stash with settled folder stamps
    assert dist_name(TAMPER.name) in settled_folders(venv.root, TAMPER.name, "1.0")
    stashed, restored = counts(venv.python)
    tamper(_stashed_package_folder(venv.root, TAMPER))

    install("1.0")
    assert counts(venv.python) == (stashed + 1, restored)
    assert manifest_of(venv.root, TAMPER.name, "1.0") is None
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==1.0" % TAMPER.name).root)
    assert assert_complete(venv, TAMPER) == "1.0"


def test_an_untouched_settled_entry_comes_back(make_venv, world):
    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "%s==%s" % (TAMPER.name, version))  # noqa: E731
    install("1.0")
    time.sleep(SETTLE_S)
    install("1.1")
    assert settled_folders(venv.root, TAMPER.name, "1.0")
    _, restored = counts(venv.python)
    install("1.0")
    assert counts(venv.python)[1] == restored + 1
    assert_same(venv.root, uv_fresh(make_venv, world, "%s==1.0" % TAMPER.name).root)


@pytest.mark.parametrize("settle", [False, True], ids=["fresh", "settled"])
def test_a_file_planted_in_an_installed_folder_stays_where_uv_leaves_it(settle, make_venv, world):
    # uv's uninstall removes the RECORD's files and leaves a folder holding anything else; the
    # engine must not carry such a folder off to the stash.
    def plant(venv: Venv) -> None:
        _extra_file(os.path.join(venv.site_packages, dist_name(TAMPER.name)))

    venv = make_venv()
    install = lambda version: engine(venv.python, world.url, "%s==%s" % (TAMPER.name, version))  # noqa: E731
    install("1.0")
    if settle:
        time.sleep(SETTLE_S)
        install("1.1")
        install("1.0")  # back from the stash: its stamps are the settled ones
    plant(venv)
    install("1.1")
    assert os.path.exists(os.path.join(venv.site_packages, dist_name(TAMPER.name), "planted.py"))

    fresh = uv_fresh(make_venv, world, "%s==1.0" % TAMPER.name)
    plant(fresh)
    uv_binary(fresh.python, world.url, "--link-mode", "hardlink", "%s==1.1" % TAMPER.name)
    assert_same(venv.root, fresh.root)
