"""Helpers for test_differential.py (engine against the ``uv`` binary, command line by command line).

- distributions built offline: wheels with any metadata, and ``tinybackend``, a PEP 517/660 build
  backend made of the standard library only, to build sdists and local projects;
- a small index server (PEP 691 JSON pages with upload times, optional basic auth, optional TLS),
  run as a child process: ``python diffkit.py serve CONFIG.json`` prints ``PORT <n>``;
- snapshots of what an install left on disk, and ``uv``'s output read back (its first error line,
  its `` + name==version`` lines), with per-side temporary paths replaced by placeholders.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import json
import os
import re
import ssl
import sys
import textwrap
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

Pair = Tuple[str, str]


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256_file(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Distributions


def write_wheel(
    dest: str,
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    requires_python: Optional[str] = None,
    tag: str = "py3-none-any",
    files: Optional[Dict[str, str]] = None,
    console_scripts: Optional[Dict[str, str]] = None,
) -> str:
    """Write a wheel with a package ``<name>`` (plus ``files``) and return its path."""
    dist = re.sub(r"[-_.]+", "_", name).lower()
    info = "%s-%s.dist-info" % (dist, version)
    metadata = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version]
    if requires_python:
        metadata.append("Requires-Python: " + requires_python)
    metadata += ["Requires-Dist: " + requirement for requirement in requires]
    sources = {"%s/__init__.py" % dist: "__version__ = %r\n" % version}
    sources.update(files or {})
    content = [(path, text.encode()) for path, text in sorted(sources.items())]
    if console_scripts:
        lines = ["[console_scripts]"] + ["%s = %s" % item for item in sorted(console_scripts.items())]
        content.append((info + "/entry_points.txt", ("\n".join(lines) + "\n").encode()))
    content.append((info + "/METADATA", ("\n".join(metadata) + "\n").encode()))
    wheel = "Wheel-Version: 1.0\nGenerator: diffkit\nRoot-Is-Purelib: true\nTag: %s\n" % tag
    content.append((info + "/WHEEL", wheel.encode()))
    return _zip_wheel(os.path.join(dest, "%s-%s-%s.whl" % (dist, version, tag)), info, content)


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (path, digest, len(data))


def _zip_wheel(path: str, info: str, content: List[Tuple[str, bytes]]) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = [_record_line(member, data) for member, data in content] + [info + "/RECORD,,"]
    content = content + [(info + "/RECORD", ("\n".join(record) + "\n").encode())]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in content:
            entry = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, data)
    return path


#: The backend's whole source. Built wheels carry ``<module>/_built_by_tinybackend.txt`` (so a
#: wheel built from an sdist differs from a prebuilt one) and one empty file per config setting
#: (``-C flavor=spicy`` -> ``<module>/_cfg_flavor_spicy.txt``), so both show up in RECORD.
TINYBACKEND_SOURCE = textwrap.dedent(
    '''
    """tinybackend: a PEP 517 / PEP 660 build backend made of the standard library only."""
    import ast, base64, hashlib, io, os, re, tarfile, zipfile


    def _project():
        with open("pyproject.toml", encoding="utf-8") as handle:
            table = handle.read().split("[project]", 1)[1].split("\\n[", 1)[0]

        def value(key, default):
            found = re.search(r"^%s\\s*=\\s*(.+)$" % key, table, re.M)
            return ast.literal_eval(found.group(1)) if found else default

        return value("name", None), value("version", None), value("dependencies", [])


    def _dist(name):
        return re.sub(r"[-_.]+", "_", name).lower()


    def _metadata(name, version, dependencies):
        lines = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version]
        return ("\\n".join(lines + ["Requires-Dist: " + d for d in dependencies]) + "\\n").encode()


    def _module_files(module):
        found = []
        for folder, dirs, names in os.walk(module):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(names):
                path = os.path.join(folder, name)
                with open(path, "rb") as handle:
                    found.append((path.replace(os.sep, "/"), handle.read()))
        return found


    def _marker_files(module, config_settings):
        files = [(module + "/_built_by_tinybackend.txt", b"built\\n")]
        for key, value in sorted((config_settings or {}).items()):
            label = re.sub(r"[^A-Za-z0-9]+", "_", "%s_%s" % (key, value))
            files.append(("%s/_cfg_%s.txt" % (module, label), b""))
        return files


    def _wheel(directory, files):
        name, version, dependencies = _project()
        info = "%s-%s.dist-info" % (_dist(name), version)
        files = files + [
            (info + "/METADATA", _metadata(name, version, dependencies)),
            (info + "/WHEEL", b"Wheel-Version: 1.0\\nGenerator: tinybackend\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"),
        ]
        record = []
        for path, data in files:
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
        files.append((info + "/RECORD", ("\\n".join(record + [info + "/RECORD,,"]) + "\\n").encode()))
        filename = "%s-%s-py3-none-any.whl" % (_dist(name), version)
        with zipfile.ZipFile(os.path.join(directory, filename), "w", zipfile.ZIP_DEFLATED) as archive:
            for path, data in files:
                entry = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
                entry.external_attr = 0o644 << 16
                archive.writestr(entry, data)
        return filename


    def get_requires_for_build_wheel(config_settings=None):
        return []


    get_requires_for_build_sdist = get_requires_for_build_editable = get_requires_for_build_wheel


    def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
        name, version, dependencies = _project()
        info = "%s-%s.dist-info" % (_dist(name), version)
        os.makedirs(os.path.join(metadata_directory, info), exist_ok=True)
        with open(os.path.join(metadata_directory, info, "METADATA"), "wb") as handle:
            handle.write(_metadata(name, version, dependencies))
        return info


    prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        module = _dist(_project()[0])
        return _wheel(wheel_directory, _module_files(module) + _marker_files(module, config_settings))


    def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
        module = _dist(_project()[0])
        pth = ("_%s_editable.pth" % module, (os.path.abspath(".") + "\\n").encode())
        return _wheel(wheel_directory, [pth] + _marker_files(module, config_settings))


    def build_sdist(sdist_directory, config_settings=None):
        name, version, dependencies = _project()
        base = "%s-%s" % (_dist(name), version)
        members = [("pyproject.toml", open("pyproject.toml", "rb").read())]
        members += _module_files(_dist(name))
        members.append(("PKG-INFO", _metadata(name, version, dependencies)))
        with tarfile.open(os.path.join(sdist_directory, base + ".tar.gz"), "w:gz") as archive:
            for path, data in members:
                entry = tarfile.TarInfo("%s/%s" % (base, path))
                entry.size, entry.mtime, entry.mode = len(data), 1577836800, 0o644
                archive.addfile(entry, io.BytesIO(data))
        return base + ".tar.gz"
    '''
).lstrip()


def tinybackend_wheel(dest: str) -> str:
    """The backend itself, as a wheel an index can serve to uv's build environments."""
    return write_wheel(dest, "tinybackend", "1.0", files={"tinybackend/__init__.py": TINYBACKEND_SOURCE})


def write_project(
    root: str, name: str, version: str, dependencies: Sequence[str] = (), backend: str = "tinybackend"
) -> str:
    """A local project built by ``backend``, with a package ``<name>`` holding ``__init__.py``."""
    module = re.sub(r"[-_.]+", "_", name).lower()
    os.makedirs(os.path.join(root, module), exist_ok=True)
    with open(os.path.join(root, "pyproject.toml"), "w") as handle:
        handle.write(
            '[build-system]\nrequires = ["%s"]\nbuild-backend = "%s"\n\n'
            '[project]\nname = "%s"\nversion = "%s"\ndependencies = %s\n'
            % (backend, backend, name, version, json.dumps(list(dependencies)))
        )
    with open(os.path.join(root, module, "__init__.py"), "w") as handle:
        handle.write("__version__ = %r\n" % version)
    return root


def build_sdist(project: str, dest: str) -> str:
    """Build ``project``'s sdist into ``dest`` with tinybackend (loaded from its source)."""
    spec = importlib.util.spec_from_loader("tinybackend_local", loader=None)
    backend = importlib.util.module_from_spec(spec)
    exec(compile(TINYBACKEND_SOURCE, "tinybackend", "exec"), backend.__dict__)
    os.makedirs(dest, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(project)
    try:
        return os.path.join(dest, backend.build_sdist(dest))
    finally:
        os.chdir(cwd)


# ---------------------------------------------------------------------------------------------
# Index server (child process)
#
# CONFIG.json: {"tls": null | {"cert": PEM, "key": PEM},
#               "sites": {SITE: {"files": DIR, "auth": null | "user:pass", "times": {FILE: ISO}}}}
# Site SITE is at /SITE/simple/ (PEP 691 JSON, api-version 1.1 with upload times), its files at
# /SITE/files/NAME.

DEFAULT_UPLOAD_TIME = "2020-06-01T00:00:00Z"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def _project_of(filename: str) -> str:
    return normalize(re.split(r"-(?=\d)", filename, 1)[0])


class _IndexHandler(BaseHTTPRequestHandler):
    sites: Dict[str, dict] = {}

    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        pass

    def _send(self, status: int, body: bytes, content_type: str, headers: Iterable[Tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - name from the base class
        parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
        site = self.sites.get(parts[0]) if parts else None
        if site is None:
            return self._send(404, b"no such site\n", "text/plain")
        if site.get("auth"):
            expected = "Basic " + base64.b64encode(site["auth"].encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self._send(401, b"credentials needed\n", "text/plain",
                                  [("WWW-Authenticate", 'Basic realm="diffkit"')])
        folder = site["files"]
        names = sorted(os.listdir(folder))
        meta = {"api-version": "1.1"}
        if parts[1:] == ["simple"]:
            projects = sorted({_project_of(n) for n in names})
            body = {"meta": meta, "projects": [{"name": p} for p in projects]}
            return self._send(200, json.dumps(body).encode(), JSON_TYPE)
        if len(parts) == 3 and parts[1] == "simple":
            project = normalize(parts[2])
            files = [
                {
                    "filename": n,
                    "url": "/%s/files/%s" % (parts[0], n),
                    "hashes": {"sha256": sha256_file(os.path.join(folder, n))},
                    "upload-time": site.get("times", {}).get(n, DEFAULT_UPLOAD_TIME),
                }
                for n in names
                if _project_of(n) == project
            ]
            if not files:
                return self._send(404, b"no such project\n", "text/plain")
            body = {"meta": meta, "name": project, "files": files, "versions": []}
            return self._send(200, json.dumps(body).encode(), JSON_TYPE)
        if len(parts) == 3 and parts[1] == "files" and parts[2] in names:
            with open(os.path.join(folder, parts[2]), "rb") as handle:
                return self._send(200, handle.read(), "application/octet-stream")
        return self._send(404, b"not found\n", "text/plain")

    do_HEAD = do_GET  # noqa: N815 - uv asks HEAD before a ranged metadata read


def serve(config_path: str) -> None:
    with open(config_path) as handle:
        config = json.load(handle)
    handler = type("Handler", (_IndexHandler,), {"sites": config["sites"]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if config.get("tls"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(config["tls"]["cert"], config["tls"]["key"])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


# ---------------------------------------------------------------------------------------------
# What an install left on disk


class Paths:
    """Replace per-side temporary folders by placeholders, in text and in bytes."""

    def __init__(self, replacements: Dict[str, str]) -> None:
        pairs = []
        for folder, token in replacements.items():
            for spelling in {folder, os.path.realpath(folder)}:
                pairs.append((spelling, token))
        # Longest first, so a folder inside another is replaced as a whole.
        self.pairs = sorted(pairs, key=lambda pair: -len(pair[0]))

    def text(self, value: str) -> str:
        for folder, token in self.pairs:
            value = value.replace(folder, token)
        return value

    def data(self, value: bytes) -> bytes:
        for folder, token in self.pairs:
            value = value.replace(folder.encode(), token.encode())
        return value


#: The folder where the engine keeps swapped-out versions (see rust/src/stash.rs).
STASH_DIR = ".uv-ffi-stash"


def file_tree(root: str, paths: Paths) -> Dict[str, str]:
    """Every entry under ``root``: ``"d"`` for a folder, ``"link"`` for a symlink, else
    ``"file <mode> <sha256 of the path-normalised content>"`` (``"hardlink ..."`` when the file has
    other links, as files linked from uv's cache do). Bytecode and RECORD count by name only (bytecode
    embeds source times; RECORD hashes of rewritten files are compared through the content)."""
    tree: Dict[str, str] = {}
    if not os.path.isdir(root):
        return tree
    for folder, dirs, files in os.walk(root):
        # The engine's stash of swapped-out versions (outside every import path; its own tests
        # are in test_stash.py) is not part of what uv would leave there.
        dirs[:] = [d for d in dirs if d != STASH_DIR]
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            info = os.lstat(path)
            if os.path.islink(path):
                tree[rel] = "link"
            elif os.path.isdir(path):
                tree[rel] = "d"
            elif name.endswith(".pyc") or name == "RECORD":
                tree[rel] = "file"
            else:
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(paths.data(handle.read())).hexdigest()[:16]
                kind = "hardlink" if info.st_nlink > 1 else "file"
                tree[rel] = "%s %o %s" % (kind, info.st_mode & 0o777, digest)
    return tree


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _metadata_field(metadata: str, field: str) -> str:
    found = re.search(r"^%s:\s*(.+)$" % field, metadata, re.M)
    return found.group(1).strip() if found else ""


def distributions(root: str, paths: Paths) -> Dict[str, dict]:
    """Every ``.dist-info`` under ``root``, keyed ``"<folder>: <normalised name>==<version>"``:
    its RECORD paths (sorted), INSTALLER, REQUESTED presence and direct_url.json."""
    found: Dict[str, dict] = {}
    if not os.path.isdir(root):
        return found
    for folder, dirs, _ in os.walk(root):
        for name in [d for d in dirs if d.endswith(".dist-info")]:
            info = os.path.join(folder, name)
            metadata = _read(os.path.join(info, "METADATA")) or ""
            key = "%s: %s==%s" % (
                os.path.relpath(folder, root),
                normalize(_metadata_field(metadata, "Name")),
                _metadata_field(metadata, "Version"),
            )
            record = _read(os.path.join(info, "RECORD"))
            direct_url = _read(os.path.join(info, "direct_url.json"))
            found[key] = {
                "RECORD": sorted(paths.text(row[0]) for row in csv.reader((record or "").splitlines()) if row),
                "INSTALLER": _read(os.path.join(info, "INSTALLER")),
                "REQUESTED": os.path.exists(os.path.join(info, "REQUESTED")),
                "direct_url.json": json.loads(paths.text(direct_url)) if direct_url is not None else None,
            }
    return found


def installed_pairs(root: str) -> Set[Pair]:
    """(normalised name, version) of every distribution under ``root``."""
    pairs = set()
    for key in distributions(root, Paths({})):
        name, version = key.split(": ", 1)[1].split("==", 1)
        pairs.add((name, version))
    return pairs


def _flatten(value, prefix: str = "") -> Dict[str, object]:
    if isinstance(value, dict) and value:
        flat: Dict[str, object] = {}
        for key, item in value.items():
            flat.update(_flatten(item, "%s / %s" % (prefix, key) if prefix else str(key)))
        return flat
    return {prefix: value}


def differences(engine: dict, uv: dict, limit: int = 40) -> str:
    """The leaves where two nested dicts differ, one line each: ``path: engine=... uv=...``."""
    left, right = _flatten(engine), _flatten(uv)
    lines = []
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key, "<absent>"), right.get(key, "<absent>")
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list):
            lines.append("%s: only engine %s, only uv %s" % (key, sorted(set(a) - set(b)), sorted(set(b) - set(a))))
        else:
            lines.append("%s: engine=%r uv=%r" % (key, a, b))
    if len(lines) > limit:
        lines = lines[:limit] + ["... %d more" % (len(lines) - limit)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# uv's output

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CHANGE = re.compile(r"^ ([-+~]) ([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s]+)")


def first_error_line(stderr: str) -> str:
    """uv's first ``error: ...`` or ``  × ...`` line, without that prefix ("" if none)."""
    for line in _ANSI.sub("", stderr).splitlines():
        if line.startswith("error:"):
            return line[len("error:"):].strip()
        if line.startswith("  × "):
            return line[len("  × "):].strip()
    return ""


def comparable_text(text: str, paths: Paths) -> str:
    """For 'does the engine say what uv said': no colours, no per-side paths, one space for any
    run of whitespace (so line wrapping does not matter)."""
    return " ".join(paths.text(_ANSI.sub("", text)).split())


def reported_changes(stderr: str) -> Tuple[List[Pair], List[Pair]]:
    """(installed, removed) from uv's `` + a==1``, `` - a==1`` and `` ~ a==1`` lines, sorted."""
    installed, removed = set(), set()
    for line in _ANSI.sub("", stderr).splitlines():
        found = _CHANGE.match(line)
        if found:
            sign, pair = found.group(1), (normalize(found.group(2)), found.group(3))
            if sign in "+~":
                installed.add(pair)
            if sign in "-~":
                removed.add(pair)
    return sorted(installed), sorted(removed)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 3:
        serve(sys.argv[2])
    else:
        sys.exit("usage: python diffkit.py serve CONFIG.json")
