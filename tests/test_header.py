"""Drift checks between rust/include/uv_ffi.h, the Rust source and the built library.

What is checked (each failure names exactly what drifted):

- exports: every dynamic symbol named uv_ffi_* or omnipkg_uv_* that the library `import uv_ffi`
  loads defines is declared in the header, and every declared function is exported. The ELF
  dynamic symbol table is read here (no dependency), and cross-checked with binutils' nm.
- rust_exports: every `#[unsafe(no_mangle)]` / `#[no_mangle]` function in rust/src/*.rs is
  declared in the header, and every declared function is one of them.
- reply_fields: for each JSON function (abi.rs: `call(request, ops::NAME)` or
  `call_on_text(request, ops::NAME)`, ops: `fn NAME(_: Req)` or `fn NAME(_: RequestText<Req>)`
  `-> Result<Reply>`), every JSON name the reply serialises (fields after serde's rename /
  rename_all / skip / flatten, recursively through the crate's own structs, enum tags and unit
  variants) appears quoted in the comment block right above that function's declaration.
- request_fields: the same for the request struct's fields (what `deny_unknown_fields` accepts).
- request_optional: a request field serde fills in when absent (`#[serde(default)]`, `Option`) is
  written `"name"?:` in the header's `Request {...}`, and a required one `"name":`.
- documented_unknown: a key documented in a `Request {...}` or `Value {...}` schema that the Rust
  types do not have (a caller following the header would be refused, or wait for nothing).
- envelope: the envelope structs (the Serialize structs with an `ok` field) and the error they
  carry, with every error kind, are described in the header's preamble.
- run_c: the JSON keys omnipkg_uv_run_c writes and the c_int constants it returns are in its
  comment block.
- references: every file the header names (docs/abi.md, build_ffi.py, ...) exists in the repository.
- mapping: problems of the checker itself (a JSON function whose ops function or types cannot be
  found), so a refactor cannot silently turn the checks above into no-ops.

`check_header(header=...)` takes any header path, so the checker is itself tested below on edited
copies of the header: a removed declaration, a removed field, a missing document.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.path.join(ROOT, "rust", "include", "uv_ffi.h")
SRC_DIR = os.path.join(ROOT, "rust", "src")

#: Exported symbols that belong to the C ABI (anything else the cdylib exports is not ours).
ABI_SYMBOL = re.compile(r"^(uv_ffi_|omnipkg_uv_)\w+$")

#: Enum variants the Rust side promises never to put in a reply (so the header need not list them),
#: as "Enum::Variant". Keep this short: anything listed here is exempt from the drift check.
INTERNAL_VARIANTS = {
    "ErrorKind::DeferToUv",  # error.rs: "Internal signal, never sent to a caller"
}

CATEGORIES = (
    "exports", "rust_exports", "reply_fields", "request_fields", "request_optional",
    "documented_unknown", "envelope", "run_c", "references", "mapping",
)


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


# --------------------------------------------------------------------------------------------
# The C header
# --------------------------------------------------------------------------------------------


@dataclass
class Declaration:
    name: str
    line: int
    doc: str  # the comment block right above the declaration, comment markers removed


@dataclass
class ParsedHeader:
    path: str
    text: str
    declarations: Dict[str, Declaration]
    duplicates: List[str]
    preamble: str  # every comment not attached to a declaration


def _comment_text(raw: str) -> str:
    """A C comment without its markers and leading '*' columns."""
    if raw.startswith("//"):
        return raw[2:].lstrip("/").strip()
    body = raw[2:-2]
    lines = []
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("*"):
            line = line[1:]
        lines.append(line)
    return "\n".join(lines).strip("*\n ")


def _c_segments(text: str) -> List[Tuple[str, int, int]]:
    """('comment' | 'code', start, end) spans covering text; string literals stay code."""
    spans = []
    i, start, n = 0, 0, len(text)
    while i < n:
        if text.startswith("/*", i) or text.startswith("//", i):
            if i > start:
                spans.append(("code", start, i))
            if text.startswith("/*", i):
                end = text.find("*/", i + 2)
                end = n if end < 0 else end + 2
            else:
                end = text.find("\n", i)
                end = n if end < 0 else end
            spans.append(("comment", i, end))
            i = start = end
        elif text[i] in "\"'":
            quote, i = text[i], i + 1
            while i < n and text[i] != quote:
                i += 2 if text[i] == "\\" else 1
            i += 1
        else:
            i += 1
    if start < n:
        spans.append(("code", start, n))
    return spans


def parse_header(path: str) -> ParsedHeader:
    return parse_header_text(open(path, encoding="utf-8").read(), path)


def parse_header_text(text: str, path: str = "<header>") -> ParsedHeader:
    spans = _c_segments(text)
    # Code with comments and preprocessor lines blanked (positions kept) for finding declarations.
    chars = list(text)
    for kind, start, end in spans:
        if kind == "comment":
            for k in range(start, end):
                if chars[k] != "\n":
                    chars[k] = " "
    code = "".join(chars)
    code = re.sub(r"(?m)^[ \t]*#.*$", lambda m: " " * len(m.group(0)), code)
    declarations: Dict[str, Declaration] = {}
    duplicates: List[str] = []
    attached: Set[int] = set()
    pattern = re.compile(r"(?<![\w])([A-Za-z_][\w \t\*]*?[\s\*])([A-Za-z_]\w*)\s*\(([^()]*)\)\s*;")
    for match in pattern.finditer(code):
        name, start = match.group(2), match.start(1)
        # The comments directly above, with nothing but whitespace between them and the code.
        doc_parts: List[str] = []
        index = max(k for k, (_, s, _) in enumerate(spans) if s <= start)
        # The span holding `start` is code; walk back over whitespace-only code and comments.
        kind, s, _ = spans[index]
        if kind == "code" and text[s:start].strip():
            index = -1  # something else precedes the declaration inside the same code span
        else:
            index -= 1
        while index >= 0:
            kind, s, e = spans[index]
            if kind == "comment":
                doc_parts.insert(0, _comment_text(text[s:e]))
                attached.add(index)
            elif text[s:e].strip():
                break
            index -= 1
        if name in declarations:
            duplicates.append(name)
        declarations[name] = Declaration(name, text.count("\n", 0, start) + 1, "\n".join(doc_parts))
    preamble = "\n".join(
        _comment_text(text[s:e]) for k, (kind, s, e) in enumerate(spans) if kind == "comment" and k not in attached
    )
    return ParsedHeader(path, text, declarations, duplicates, preamble)


def _balanced(text: str, open_at: int) -> str:
    """The text from the brace at open_at to its match (or the end)."""
    depth = 0
    for k in range(open_at, len(text)):
        if text[k] in "{[":
            depth += 1
        elif text[k] in "}]":
            depth -= 1
            if depth == 0:
                return text[open_at:k + 1]
    return text[open_at:]


def schema_section(doc: str, word: str) -> Optional[str]:
    """The `{...}` after `Request` or `Value` in a doc block, or None."""
    match = re.search(r"\b%s\s*(\{)" % word, doc)
    return _balanced(doc, match.start(1)) if match else None


def without_section(doc: str, word: str) -> str:
    """doc with the `{...}` after `word` removed (a reply field is not documented by a request key)."""
    section = schema_section(doc, word)
    return doc.replace(section, "{}", 1) if section else doc


def documented_keys(section: str) -> Dict[str, bool]:
    """Keys written `"k":` (False) or `"k"?:` (True: optional) anywhere in a schema section."""
    keys: Dict[str, bool] = {}
    for match in re.finditer(r'"(\w+)"\s*(\?)?\s*:', section):
        keys[match.group(1)] = keys.get(match.group(1), False) or bool(match.group(2))
    return keys


def top_level_keys(section: str) -> Dict[str, bool]:
    """Like documented_keys, but only at the outermost level of the object."""
    depth, keep = 0, []
    for char in section:
        if char in "{[":
            depth += 1
            keep.append(" " if depth > 1 else char)
            continue
        if char in "}]":
            depth -= 1
            keep.append(" " if depth >= 1 else char)
            continue
        keep.append(char if depth <= 1 else " ")
    return documented_keys("".join(keep))


def quoted(doc: str, name: str) -> bool:
    return '"%s"' % name in doc


def word(doc: str, name: str) -> bool:
    return re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(name), doc) is not None


# --------------------------------------------------------------------------------------------
# The Rust source (a small scanner: comments and literals are masked, positions are kept)
# --------------------------------------------------------------------------------------------


def rust_mask(text: str) -> str:
    """text with comments blanked and string/char literal contents replaced by 'x'."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a: int, b: int, fill: str = " ") -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = fill

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif text.startswith("/*", i):
            depth, k = 1, i + 2
            while k < n and depth:
                if text.startswith("/*", k):
                    depth, k = depth + 1, k + 2
                elif text.startswith("*/", k):
                    depth, k = depth - 1, k + 2
                else:
                    k += 1
            blank(i, k)
            i = k
        elif re.match(r"b?r#*\"", text[i:i + 260]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r"b?r(#*)\"", text[i:])
            hashes = m.group(1)
            body = i + m.end()
            end = text.find('"' + hashes, body)
            end = n if end < 0 else end
            blank(body, end, "x")
            i = end + 1 + len(hashes)
        elif c == '"':
            k = i + 1
            while k < n and text[k] != '"':
                k += 2 if text[k] == "\\" else 1
            blank(i + 1, k, "x")
            i = k + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:i + 12])
            if m:
                blank(i + 1, i + m.end() - 1, "x")
                i += m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def matching_brace(mask: str, open_at: int) -> int:
    depth = 0
    for k in range(open_at, len(mask)):
        if mask[k] == "{":
            depth += 1
        elif mask[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    raise ValueError("unbalanced braces")


def split_top_level(text: str, mask: str) -> List[Tuple[str, str]]:
    """Split (original, mask) at commas outside (), [], {}, <>; returns (original, mask) chunks."""
    chunks, depth, start, k = [], 0, 0, 0
    while k < len(mask):
        c = mask[k]
        if c in "([{<":
            depth += 1
        elif c in ")]}" or (c == ">" and mask[k - 1:k] != "-"):
            depth -= 1
        elif c == "," and depth == 0:
            chunks.append((text[start:k], mask[start:k]))
            start = k + 1
        k += 1
    chunks.append((text[start:], mask[start:]))
    return [(o, m) for o, m in chunks if m.strip()]


ATTR = r"#\[(?:[^\[\]]|\[[^\[\]]*\])*\]"


def serde_items(attrs: str) -> List[Tuple[str, Optional[str]]]:
    """(key, value) pairs of every #[serde(...)] in attrs; nested rename(serialize = ..) flattened."""
    items: List[Tuple[str, Optional[str]]] = []
    for inner in re.findall(r"#\[\s*serde\s*\((.*?)\)\s*\]", attrs, flags=re.S):
        for key, nested, value in re.findall(r'(\w+)\s*(?:\(([^)]*)\)|=\s*"([^"]*)")?', inner):
            if nested:
                for sub_key, sub_value in re.findall(r'(\w+)\s*=\s*"([^"]*)"', nested):
                    items.append(("%s.%s" % (key, sub_key), sub_value))
            else:
                items.append((key, value if value else None))
    return items


def derives(attrs: str) -> Set[str]:
    names: Set[str] = set()
    for inner in re.findall(r"#\[\s*derive\s*\((.*?)\)\s*\]", attrs, flags=re.S):
        names.update(part.strip().split("::")[-1] for part in inner.split(","))
    return names


def _words(name: str) -> List[str]:
    if "_" in name or name.islower():
        return [w for w in name.split("_") if w]
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", name)]


def rename_all(name: str, rule: Optional[str], variant: bool) -> str:
    """serde's rename_all for a field (snake_case) or a variant (PascalCase) name."""
    if not rule:
        return name
    words = _words(name)
    if rule == "lowercase":
        return name.lower() if variant else name
    if rule == "UPPERCASE":
        return name.upper()
    if rule == "PascalCase":
        return name if variant else "".join(w.capitalize() for w in words)
    if rule == "camelCase":
        pascal = name if variant else "".join(w.capitalize() for w in words)
        return pascal[:1].lower() + pascal[1:]
    if rule == "snake_case":
        return "_".join(words)
    if rule == "SCREAMING_SNAKE_CASE":
        return "_".join(words).upper()
    if rule == "kebab-case":
        return "-".join(words)
    if rule == "SCREAMING-KEBAB-CASE":
        return "-".join(words).upper()
    raise ValueError("unknown rename_all rule %r" % rule)


@dataclass
class RustField:
    name: str  # as written in Rust
    type: str
    ser_name: Optional[str]  # None: never serialised
    de_name: Optional[str]  # None: never deserialised
    optional_in: bool  # serde fills it in when absent
    flatten: bool


@dataclass
class RustType:
    name: str
    kind: str  # "struct" or "enum"
    file: str
    derives: Set[str]
    fields: List[RustField] = field(default_factory=list)  # struct
    variants: List[Tuple[str, bool]] = field(default_factory=list)  # enum: (serialised name, unit?)
    tag: Optional[str] = None  # enum: #[serde(tag = ...)]
    deny_unknown_fields: bool = False


def _strip_raw(ident: str) -> str:
    return ident[2:] if ident.startswith("r#") else ident


def parse_rust_types(src_dir: str) -> Tuple[Dict[str, List[RustType]], Dict[str, Tuple[str, str]]]:
    """Every struct/enum with braces in src_dir, by name; and every file's (text, mask)."""
    types: Dict[str, List[RustType]] = {}
    files: Dict[str, Tuple[str, str]] = {}
    for path in sorted(glob.glob(os.path.join(src_dir, "**", "*.rs"), recursive=True)):
        text = open(path, encoding="utf-8").read()
        mask = rust_mask(text)
        files[path] = (text, mask)
        item = re.compile(
            r"(?P<attrs>(?:%s\s*)*)(?:pub(?:\s*\([^)]*\))?\s+)?(?P<kind>struct|enum)\s+(?P<name>\w+)"
            r"\s*(?:<[^{;]*?>)?\s*(?:where[^{;]*)?\{" % ATTR
        )
        for match in item.finditer(mask):
            attrs = text[match.start("attrs"):match.end("attrs")]
            open_at = match.end() - 1
            close = matching_brace(mask, open_at)
            body, body_mask = text[open_at + 1:close], mask[open_at + 1:close]
            container = dict(serde_items(attrs))
            keys = [k for k, _ in serde_items(attrs)]
            rule_ser = container.get("rename_all.serialize") or container.get("rename_all")
            rule_de = container.get("rename_all.deserialize") or container.get("rename_all")
            rust_type = RustType(
                match.group("name"), match.group("kind"), path, derives(attrs),
                tag=container.get("tag"), deny_unknown_fields="deny_unknown_fields" in keys,
            )
            for chunk, chunk_mask in split_top_level(body, body_mask):
                head = re.match(r"\s*((?:%s\s*)*)" % ATTR, chunk_mask)
                field_attrs = chunk[:head.end()]
                rest, rest_mask = chunk[head.end():], chunk_mask[head.end():]
                options = serde_items(field_attrs)
                opts = dict(options)
                keys = {k for k, _ in options}
                if rust_type.kind == "struct":
                    m = re.match(r"\s*(?:pub(?:\s*\([^)]*\))?\s+)?((?:r#)?\w+)\s*:\s*(.+)$", rest_mask, flags=re.S)
                    if not m:
                        continue
                    name = _strip_raw(m.group(1))
                    ftype = re.sub(r"\s+", " ", rest[m.start(2):m.end(2)]).strip()
                    skip_all = "skip" in keys
                    ser = None if skip_all or "skip_serializing" in keys else (
                        opts.get("rename.serialize") or opts.get("rename") or rename_all(name, rule_ser, False))
                    de = None if skip_all or "skip_deserializing" in keys else (
                        opts.get("rename.deserialize") or opts.get("rename") or rename_all(name, rule_de, False))
                    optional = (
                        "default" in keys or "default" in container or skip_all or "skip_deserializing" in keys
                        or re.match(r"(?:std::option::)?Option\s*<", ftype) is not None
                    )
                    rust_type.fields.append(RustField(name, ftype, ser, de, optional, "flatten" in keys))
                else:
                    m = re.match(r"\s*(\w+)\s*(.*)$", rest_mask, flags=re.S)
                    if not m or "skip" in keys or "skip_serializing" in keys:
                        continue
                    if "%s::%s" % (rust_type.name, m.group(1)) in INTERNAL_VARIANTS:
                        continue
                    unit = not m.group(2).strip() or m.group(2).strip().startswith("=")
                    ser = opts.get("rename.serialize") or opts.get("rename") or rename_all(m.group(1), rule_ser, True)
                    rust_type.variants.append((ser, unit))
            types.setdefault(rust_type.name, []).append(rust_type)
    return types, files


@dataclass
class RustFunction:
    name: str  # the exported symbol
    file: str
    line: int
    signature: str
    body: str
    returns_json: bool


def parse_exported_functions(files: Dict[str, Tuple[str, str]]) -> Dict[str, RustFunction]:
    """Every #[unsafe(no_mangle)] / #[no_mangle] / #[export_name] function."""
    found: Dict[str, RustFunction] = {}
    item = re.compile(
        r"(?P<attrs>(?:%s\s*)+)(?:pub(?:\s*\([^)]*\))?\s+)?(?:unsafe\s+)?(?:extern\s+\"[^\"]*\"\s+)?"
        r"fn\s+(?P<name>\w+)\s*\((?P<params>[^{]*?)\)\s*(?:->\s*(?P<ret>[^{]+?))?\s*\{" % ATTR
    )
    for path, (text, mask) in files.items():
        for match in item.finditer(mask):
            attrs = text[match.start("attrs"):match.end("attrs")]
            if not re.search(r"no_mangle|export_name", attrs):
                continue
            export = re.search(r'export_name\s*=\s*"([^"]+)"', attrs)
            name = export.group(1) if export else match.group("name")
            close = matching_brace(mask, match.end() - 1)
            ret = text[match.start("ret"):match.end("ret")] if match.group("ret") else ""
            found[name] = RustFunction(
                name, path, text.count("\n", 0, match.start("name")) + 1,
                re.sub(r"\s+", " ", text[match.start("name"):match.end() - 1]).strip(),
                text[match.end():close], "c_char" in ret and "*mut" in ret,
            )
    return found


def parse_ops(files: Dict[str, Tuple[str, str]]) -> Dict[str, Tuple[str, str, str]]:
    """ops functions: name -> (request type, reply type, file), from `fn f(x: Req) -> Result<Reply>`."""
    paths = [p for p in files if os.path.basename(p) == "ops.rs" or os.sep + "ops" + os.sep in p]
    ops: Dict[str, Tuple[str, str, str]] = {}
    item = re.compile(
        r"\bfn\s+(\w+)\s*(?:<[^>(]*>)?\s*\(\s*(?:mut\s+)?(?:\w+|_)\s*:\s*([^,)]+?)\s*,?\s*\)\s*->\s*([^{]+?)\s*(?:where[^{]*)?\{"
    )
    for path in paths:
        text, mask = files[path]
        for match in item.finditer(mask):
            request = re.findall(r"\w+", text[match.start(2):match.end(2)])
            result = re.match(r"\s*(?:[\w:]*::)?Result\s*<\s*([\w:]+)", text[match.start(3):match.end(3)])
            if request and result:
                ops[match.group(1)] = (request[-1], result.group(1).split("::")[-1], path)
    return ops


# --------------------------------------------------------------------------------------------
# The library's dynamic symbols
# --------------------------------------------------------------------------------------------


def elf_dynamic_symbols(path: str) -> Set[str]:
    """Defined, global or weak function/object symbols in the ELF .dynsym of path."""
    data = open(path, "rb").read()
    assert data[:4] == b"\x7fELF", "%s is not an ELF file" % path
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
        sh_fmt = end + "IIQQQQIIQQ"
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
        sh_fmt = end + "IIIIIIIIII"
    sections = [struct.unpack_from(sh_fmt, data, shoff + k * shentsize) for k in range(shnum)]
    names: Set[str] = set()
    for section in sections:
        sh_type, sh_offset, sh_size, sh_link, sh_entsize = section[1], section[4], section[5], section[6], section[9]
        if sh_type != 11:  # SHT_DYNSYM
            continue
        strtab = sections[sh_link]
        str_offset = strtab[4]
        for k in range(sh_size // sh_entsize):
            at = sh_offset + k * sh_entsize
            if is64:
                st_name, st_info, _, st_shndx = struct.unpack_from(end + "IBBH", data, at)
            else:
                st_name, _, _, st_info, _, st_shndx = struct.unpack_from(end + "IIIBBH", data, at)
            bind, kind = st_info >> 4, st_info & 0xF
            if st_shndx == 0 or bind not in (1, 2) or kind not in (1, 2):  # UNDEF; GLOBAL/WEAK; OBJECT/FUNC
                continue
            name_end = data.index(b"\0", str_offset + st_name)
            names.add(data[str_offset + st_name:name_end].decode())
    return names


def nm_dynamic_symbols(path: str) -> Set[str]:
    nm = shutil.which("nm")
    assert nm, "nm is not on PATH: install the Debian package binutils"
    out = subprocess.run([nm, "-D", "--defined-only", path], check=True, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-2] in "TtWwDdBbRrVvi":
            names.add(parts[-1].split("@")[0])
    return names


def abi_symbols(names: Iterable[str]) -> Set[str]:
    return {name for name in names if ABI_SYMBOL.match(name)}


def library_path() -> str:
    """The library `import uv_ffi` loads (see uv_ffi/_native.py)."""
    from uv_ffi import _native

    return os.path.abspath(_native._library_path())


# --------------------------------------------------------------------------------------------
# The checker
# --------------------------------------------------------------------------------------------


class Checker:
    def __init__(self, header: str, src_dir: str, root: str) -> None:
        self.header = parse_header(header)
        self.header_rel = os.path.relpath(header, root) if header.startswith(root + os.sep) else header
        self.src_dir, self.root = src_dir, root
        self.types, self.files = parse_rust_types(src_dir)
        self.exported = parse_exported_functions(self.files)
        self.ops = parse_ops(self.files)
        self.problems: Dict[str, List[str]] = {c: [] for c in CATEGORIES}

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.root) if path.startswith(self.root + os.sep) else path

    def problem(self, category: str, message: str) -> None:
        self.problems[category].append(message)

    def lookup(self, name: str, derive: str) -> Optional[RustType]:
        candidates = [t for t in self.types.get(name, []) if derive in t.derives]
        return candidates[0] if len(candidates) == 1 else None

    # -- what a type puts on the wire ------------------------------------------------------------

    def wire_names(self, type_name: str, derive: str, seen: Optional[Set[str]] = None) -> List[Tuple[str, str, str]]:
        """(json name, 'key' | 'variant', where) for a type and the crate types it contains."""
        seen = set() if seen is None else seen
        rust_type = self.lookup(type_name, derive)
        if rust_type is None or type_name in seen:
            return []
        seen.add(type_name)
        where = "%s (%s)" % (type_name, self.rel(rust_type.file))
        out: List[Tuple[str, str, str]] = []
        if rust_type.kind == "enum":
            if rust_type.tag:
                out.append((rust_type.tag, "key", where + " tag"))
            if all(unit for _, unit in rust_type.variants) and not rust_type.tag:
                out.extend((name, "variant", where) for name, _ in rust_type.variants)
            return out
        for f in rust_type.fields:
            json_name = f.ser_name if derive == "Serialize" else f.de_name
            if json_name is None:
                continue
            if not f.flatten:
                out.append((json_name, "key", "%s.%s (%s)" % (type_name, f.name, self.rel(rust_type.file))))
            for inner in re.findall(r"[A-Z]\w*", f.type):
                out.extend(self.wire_names(inner, derive, seen))
        return out

    # -- the checks ------------------------------------------------------------------------------

    def check_functions(self, exports: Optional[Set[str]], library: str) -> None:
        declared = set(self.header.declarations)
        for name in self.header.duplicates:
            self.problem("rust_exports", "%s: declared more than once in %s" % (name, self.header_rel))
        if exports is not None:
            ours = abi_symbols(exports)
            for name in sorted(ours - declared):
                self.problem("exports", "%s: exported by the library (%s) but not declared in %s" % (
                    name, library, self.header_rel))
            for name in sorted(declared - ours):
                self.problem("exports", "%s: declared in %s (line %d) but not exported by the library (%s)" % (
                    name, self.header_rel, self.header.declarations[name].line, library))
        for name, fn in sorted(self.exported.items()):
            if name not in declared:
                self.problem("rust_exports", "%s: #[no_mangle] in %s:%d but not declared in %s" % (
                    name, self.rel(fn.file), fn.line, self.header_rel))
        for name in sorted(declared - set(self.exported)):
            self.problem("rust_exports", "%s: declared in %s (line %d) but no #[no_mangle] function in %s has that name" % (
                name, self.header_rel, self.header.declarations[name].line, self.rel(self.src_dir)))

    def check_json_functions(self) -> None:
        for name, fn in sorted(self.exported.items()):
            if not fn.returns_json:
                continue
            # `call` reads the request for the op; `call_on_text` hands the op its text, typed
            # `RequestText<Req>`, to read itself.
            call = re.search(r"\bcall(?:_on_text)?\s*\(\s*[\w.]+\s*,\s*(?:crate::)?ops::(\w+)\s*\)", fn.body)
            if not call:
                self.problem("mapping", "%s (%s:%d): returns a JSON reply but no `call(request, ops::NAME)` was found "
                             "in its body; update tests/test_header.py" % (name, self.rel(fn.file), fn.line))
                continue
            op = call.group(1)
            if op not in self.ops:
                self.problem("mapping", "%s: calls ops::%s, whose `fn %s(request: Req) -> Result<Reply>` was not "
                             "found in rust/src/ops.rs" % (name, op, op))
                continue
            request, reply, _ = self.ops[op]
            decl = self.header.declarations.get(name)
            if decl is None:
                continue  # reported by check_functions
            self.check_reply(name, decl, op, reply)
            self.check_request(name, decl, op, request)

    def check_reply(self, name: str, decl: Declaration, op: str, reply: str) -> None:
        if self.lookup(reply, "Serialize") is None:
            self.problem("mapping", "%s: the reply type %s of ops::%s is not a (unique) #[derive(Serialize)] "
                         "struct or enum in %s" % (name, reply, op, self.rel(self.src_dir)))
            return
        wire = self.wire_names(reply, "Serialize")
        doc = without_section(decl.doc, "Request")
        for json_name, kind, where in wire:
            present = quoted(doc, json_name) if kind == "key" else word(doc, json_name)
            if not present:
                what = "reply field" if kind == "key" else "reply value"
                self.problem("reply_fields", '%s: %s "%s" (%s) is not in the comment above %s in %s (line %d)' % (
                    name, what, json_name, where, name, self.header_rel, decl.line))
        section = schema_section(decl.doc, "Value")
        if section is not None:
            known = {json_name for json_name, kind, _ in wire if kind == "key"}
            for key in sorted(set(documented_keys(section)) - known):
                self.problem("documented_unknown", '%s: the header documents reply key "%s" in Value {...}, '
                             "but %s (ops::%s) has no such field" % (name, key, reply, op))

    def check_request(self, name: str, decl: Declaration, op: str, request: str) -> None:
        rust_type = self.lookup(request, "Deserialize")
        if rust_type is None or rust_type.kind != "struct":
            self.problem("mapping", "%s: the request type %s of ops::%s is not a (unique) #[derive(Deserialize)] "
                         "struct in %s" % (name, request, op, self.rel(self.src_dir)))
            return
        section = schema_section(decl.doc, "Request")
        scope = section if section is not None else decl.doc
        fields = [f for f in rust_type.fields if f.de_name is not None]
        for f in fields:
            if not quoted(scope, f.de_name):
                where = "the Request {...} schema in the comment" if section is not None else "the comment"
                self.problem("request_fields", '%s: request field "%s" (%s.%s, %s) is not in %s above %s in %s '
                             "(line %d)" % (name, f.de_name, request, f.name, self.rel(rust_type.file), where, name,
                                            self.header_rel, decl.line))
        if section is None:
            return
        documented = top_level_keys(section)
        for f in fields:
            if f.de_name not in documented:
                continue
            if f.optional_in and not documented[f.de_name]:
                self.problem("request_optional", '%s: request field "%s" (%s.%s) may be omitted (serde default or '
                             'Option) but the header writes it as required: "%s": instead of "%s"?:' % (
                                 name, f.de_name, request, f.name, f.de_name, f.de_name))
            if not f.optional_in and documented[f.de_name]:
                self.problem("request_optional", '%s: request field "%s" (%s.%s) is required but the header marks '
                             'it optional ("%s"?:)' % (name, f.de_name, request, f.name, f.de_name))
        accepted = {f.de_name for f in fields}
        for key in sorted(set(documented) - accepted):
            refusal = " and deny_unknown_fields refuses it" if rust_type.deny_unknown_fields else ""
            self.problem("documented_unknown", '%s: the header documents request key "%s", but %s (ops::%s) has no '
                         "such field%s" % (name, key, request, op, refusal))

    def check_envelope(self) -> None:
        envelopes = [
            t for ts in self.types.values() for t in ts
            if t.kind == "struct" and "Serialize" in t.derives and any(f.name == "ok" for f in t.fields)
        ]
        if not envelopes:
            self.problem("mapping", "no #[derive(Serialize)] struct with an `ok` field (the reply envelope) was found "
                         "in %s; update tests/test_header.py" % self.rel(self.src_dir))
        seen: Set[str] = set()
        for envelope in envelopes:
            for json_name, kind, where in self.wire_names(envelope.name, "Serialize", seen):
                present = quoted(self.header.preamble, json_name) if kind == "key" else word(self.header.preamble, json_name)
                if not present:
                    self.problem("envelope", '%s "%s" (%s) is not described in the preamble comment of %s' % (
                        "envelope field" if kind == "key" else "error kind", json_name, where, self.header_rel))

    def check_run_c(self) -> None:
        for name, fn in sorted(self.exported.items()):
            if fn.returns_json or "c_int" not in fn.signature.split("->")[-1]:
                continue
            decl = self.header.declarations.get(name)
            if decl is None:
                continue
            text, _ = self.files[fn.file]
            # The reply may be built by helpers in the same file: read their bodies too.
            body = fn.body + "".join(_function_body(text, callee) for callee in set(re.findall(r"\b(\w+)\(", fn.body)))
            for key in sorted(set(re.findall(r'\\?"(\w+)\\?"\s*:', body))):
                if not quoted(decl.doc, key):
                    self.problem("run_c", '%s: writes the JSON key "%s" (%s:%d) but the comment above it in %s does '
                                 "not mention it" % (name, key, self.rel(fn.file), fn.line, self.header_rel))
            for key, value in sorted(set(re.findall(r'\\?"(\w+)\\?"\s*:\s*\\?"(\w+)\\?"', body))):
                if not quoted(decl.doc, value):
                    self.problem("run_c", '%s: writes "%s": "%s" (%s:%d) but the comment above it in %s does not '
                                 'mention "%s"' % (name, key, value, self.rel(fn.file), fn.line, self.header_rel, value))
            constants = dict(re.findall(r"\bconst\s+(\w+)\s*:\s*c_int\s*=\s*(-?\d+)\s*;", text))
            for const, value in sorted(constants.items()):
                if re.search(r"\b%s\b" % const, body) and not re.search(r"(?<![\w-])%s(?!\d)" % re.escape(value), decl.doc):
                    self.problem("run_c", "%s: uses %s = %s but the comment above it in %s does not mention %s" % (
                        name, const, value, self.header_rel, value))

    def check_references(self) -> None:
        text = self.header.text
        pattern = re.compile(
            r"(?<![\w/.:-])((?:\.{0,2}/)?(?:[\w.-]+/)*[\w-]+\.(?:md|rst|txt|py|pyi|rs|h|c|go|toml|json|ya?ml|cfg|ini|sh))\b"
        )
        header_dir = os.path.dirname(self.header.path)
        every_file: Optional[Set[str]] = None
        for match in pattern.finditer(text):
            ref = match.group(1)
            line = text.count("\n", 0, match.start()) + 1
            if "/" in ref:
                bases = [self.root, header_dir, os.path.join(self.root, "rust")]
                if any(os.path.exists(os.path.normpath(os.path.join(base, ref))) for base in bases):
                    continue
            else:
                if every_file is None:
                    every_file = set()
                    for dirpath, dirnames, filenames in os.walk(self.root):
                        dirnames[:] = [d for d in dirnames if d not in (".git", "target", "build", "node_modules")]
                        every_file.update(filenames)
                if ref in every_file:
                    continue
            self.problem("references", "%s line %d refers to %s, which does not exist in the repository" % (
                self.header_rel, line, ref))


def check_header(header: str = HEADER, src_dir: str = SRC_DIR, root: str = ROOT,
                 exports: Optional[Set[str]] = None, library: str = "the library") -> Dict[str, List[str]]:
    """Every drift between header, Rust source and (if given) the library's exports, by category."""
    checker = Checker(header, src_dir, root)
    checker.check_functions(exports, library)
    checker.check_json_functions()
    checker.check_envelope()
    checker.check_run_c()
    checker.check_references()
    return checker.problems


@functools.lru_cache(maxsize=None)
def _real_report(with_library: bool) -> Dict[str, List[str]]:
    if not with_library:
        return check_header()
    lib = library_path()
    return check_header(exports=elf_dynamic_symbols(lib), library=rel(lib) if lib.startswith(ROOT) else lib)


def assert_clean(category: str) -> None:
    problems = _real_report(category == "exports")[category]
    assert not problems, "%d drift(s) [%s]:\n  %s" % (len(problems), category, "\n  ".join(problems))


# --------------------------------------------------------------------------------------------
# The checks on the real files
# --------------------------------------------------------------------------------------------


def test_library_exports_match_header():
    assert_clean("exports")


def test_elf_reader_agrees_with_nm():
    lib = library_path()
    mine, nm = abi_symbols(elf_dynamic_symbols(lib)), abi_symbols(nm_dynamic_symbols(lib))
    assert mine == nm, "ELF reader %s, nm -D --defined-only %s" % (sorted(mine - nm), sorted(nm - mine))
    assert "uv_ffi_string_free" in mine


def test_no_mangle_functions_match_header():
    assert_clean("rust_exports")


def test_checker_understands_the_source():
    assert_clean("mapping")


def test_reply_fields_are_documented():
    assert_clean("reply_fields")


def test_request_fields_are_documented():
    assert_clean("request_fields")


def test_request_optional_markers_match():
    assert_clean("request_optional")


def test_documented_keys_exist():
    assert_clean("documented_unknown")


def test_envelope_and_error_kinds_are_documented():
    assert_clean("envelope")


def test_omnipkg_uv_run_c_contract_is_documented():
    assert_clean("run_c")


def test_header_references_exist():
    assert_clean("references")


@pytest.mark.parametrize("compiler,std,package", [("cc", "c99", "gcc"), ("c++", "c++11", "g++")])
def test_header_compiles_standalone(tmp_path, compiler, std, package):
    """Plain C99 and C++11, strict warnings, included twice (the include guard works)."""
    exe = shutil.which(compiler)
    assert exe, "%s is not on PATH: install the Debian package %s" % (compiler, package)
    source = tmp_path / ("use." + ("c" if compiler == "cc" else "cpp"))
    source.write_text('#include "uv_ffi.h"\n#include "uv_ffi.h"\nint main(void) { return 0; }\n')
    done = subprocess.run(
        [exe, "-std=" + std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only",
         "-I" + os.path.dirname(HEADER), str(source)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------------------------
# The checker catches drift (run on edited copies of the header; the real file is never touched)
# --------------------------------------------------------------------------------------------


def _edited_header(tmp_path, edit) -> str:
    original = open(HEADER, encoding="utf-8").read()
    edited = edit(original)
    assert edited != original, "the edit did not change the header; the self-test needs updating"
    path = tmp_path / "rust" / "include" / "uv_ffi.h"
    path.parent.mkdir(parents=True)
    path.write_text(edited, encoding="utf-8")
    return str(path)


def _function_body(text: str, name: str) -> str:
    """The body of `fn NAME(...)` in Rust source `text` (braces matched), or "" if there is none."""
    found = re.search(r"\bfn\s+%s\s*[(<]" % re.escape(name), text)
    if not found:
        return ""
    start = text.find("{", found.end())
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start:index + 1]
    return ""


def _new_problems(edited: str, exports: Optional[Set[str]] = None) -> Dict[str, List[str]]:
    """What the edited copy reports beyond what the real header already reports."""
    before = check_header(exports=exports)
    after = check_header(header=edited, exports=exports)
    return {c: [p for p in (q.replace(edited, rel(HEADER)) for q in after[c]) if p not in before[c]]
            for c in CATEGORIES}


def _source_exports() -> Set[str]:
    """A stand-in for the library's exports: what the Rust source marks #[no_mangle]."""
    checker = Checker(HEADER, SRC_DIR, ROOT)
    return set(checker.exported)


def _edit_doc(text: str, function: str, edit) -> str:
    """Apply edit to the comment block right above `function`'s declaration only."""
    decl = parse_header_text(text).declarations.get(function)
    assert decl, "%s is not declared in the header; the self-test needs updating" % function
    at = sum(len(line) for line in text.splitlines(True)[:decl.line - 1])
    start = text.rfind("/*", 0, at)
    return text[:start] + edit(text[start:at]) + text[at:]


def test_checker_reports_a_removed_declaration(tmp_path):
    def remove(text):
        return re.sub(r"(?m)^[^\n;]*\buv_ffi_view_patch\s*\([^;]*\);[ \t]*\n", "", text)

    edited = _edited_header(tmp_path, remove)
    assert "uv_ffi_view_patch" not in parse_header(edited).declarations
    report = check_header(header=edited, exports=_source_exports(), library="the test's exports")
    assert any(p.startswith("uv_ffi_view_patch: exported by the library") for p in report["exports"]), report
    assert any(p.startswith("uv_ffi_view_patch: #[no_mangle] in rust/src/abi.rs") for p in report["rust_exports"]), report


def test_checker_reports_an_extra_declaration(tmp_path):
    def add(text):
        return re.sub(r"(?m)^(void uv_ffi_string_free\(.*\);)$", r"\1\n\nchar *uv_ffi_gone(const char *request);", text)

    edited = _edited_header(tmp_path, add)
    report = check_header(header=edited, exports=_source_exports(), library="the test's exports")
    assert any(p.startswith("uv_ffi_gone: declared in") and "not exported" in p for p in report["exports"]), report
    assert any(p.startswith("uv_ffi_gone: declared in") for p in report["rust_exports"]), report


def _drop_key(key: str):
    """An edit removing `"key": type,` / `"key",` from a schema."""
    return lambda doc: re.sub(r'"%s"\s*\??\s*(?::[^,}\]]*)?,?\s*' % key, "", doc)


def test_checker_reports_a_removed_reply_field(tmp_path):
    edited = _edited_header(tmp_path, lambda text: _edit_doc(text, "uv_ffi_run", _drop_key("satisfied")))
    new = _new_problems(edited)
    assert any(p.startswith('uv_ffi_run: reply field "satisfied" (InstallReply.satisfied') for p in new["reply_fields"]), new


def test_checker_reports_a_removed_nested_field_and_error_kind(tmp_path):
    def edit(text):
        text = _edit_doc(text, "uv_ffi_view_get", _drop_key("checks_listed"))
        return re.sub(r"\bexternally_managed\b,?\s*", "", text)

    new = _new_problems(_edited_header(tmp_path, edit))
    assert any(p.startswith('uv_ffi_view_get: reply field "checks_listed" (ViewCounters.checks_listed')
               for p in new["reply_fields"]), new
    assert any('error kind "externally_managed"' in p for p in new["envelope"]), new


def test_checker_reports_request_drift(tmp_path):
    def edit_run(doc):
        doc = _drop_key("fresh_index")(doc)  # an accepted field left undocumented
        doc = re.sub(r'"cwd"\s*\?\s*:', '"cwd":', doc)  # optional written as required
        return re.sub(r"\bRequest\s*\{", 'Request {"colour"?: str, ', doc, count=1)  # a field Rust refuses

    new = _new_problems(_edited_header(tmp_path, lambda text: _edit_doc(text, "uv_ffi_run", edit_run)))
    assert any(p.startswith('uv_ffi_run: request field "fresh_index" (RunRequest.fresh_index')
               for p in new["request_fields"]), new
    assert any(p.startswith('uv_ffi_run: request field "cwd" (RunRequest.cwd) may be omitted')
               for p in new["request_optional"]), new
    assert any(p.startswith('uv_ffi_run: the header documents request key "colour"') and "deny_unknown_fields" in p
               for p in new["documented_unknown"]), new


def test_checker_reports_a_missing_document(tmp_path):
    edited = _edited_header(tmp_path, lambda text: text.replace(
        "\n", "\n * See docs/no-such-file.md and build_ffi.py.\n", 1))
    new = _new_problems(edited)
    assert [p for p in new["references"] if "refers to docs/no-such-file.md" in p], new
    assert not [p for p in new["references"] if "build_ffi.py" in p], new


def test_checker_reports_run_c_contract_drift(tmp_path):
    def edit(doc):
        doc = re.sub(r'"needed"', '"size"', re.sub(r"(?<![\w-])-2\b", "-3", doc))
        return doc.replace('"buffer_too_small"', '"too_small"')

    new = _new_problems(_edited_header(tmp_path, lambda text: _edit_doc(text, "omnipkg_uv_run_c", edit)))
    assert any('writes the JSON key "needed"' in p for p in new["run_c"]), new
    assert any("UV_FFI_ERR_BUFFER_TOO_SMALL = -2" in p for p in new["run_c"]), new
    assert any('writes "error": "buffer_too_small"' in p for p in new["run_c"]), new


def test_serde_attributes_are_understood(tmp_path):
    """rename, rename_all, skip, skip_serializing_if, default, Option and flatten on a scratch crate."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "ops.rs").write_text(
        "#[derive(Serialize)]\n#[serde(rename_all = \"camelCase\")]\npub struct ThingReply {\n"
        "    /// doc, with a comma, and r#\"raw\"# text {\n"
        "    pub exit_code: i32,\n    #[serde(rename = \"kind\")]\n    pub r#type: Kind,\n"
        "    #[serde(skip)]\n    pub hidden: Vec<(String, String)>,\n"
        "    #[serde(skip_serializing_if = \"Option::is_none\")]\n    pub maybe: Option<u8>,\n"
        "    #[serde(flatten)]\n    pub extra: Extra,\n}\n"
        "#[derive(Serialize)]\npub struct Extra { pub inner_one: bool }\n"
        "#[derive(Serialize)]\n#[serde(rename_all = \"snake_case\")]\npub enum Kind { FirstOne, #[serde(rename = \"two\")] Second }\n"
        "#[derive(Deserialize)]\n#[serde(deny_unknown_fields)]\npub struct ThingRequest {\n"
        "    pub name: String,\n    #[serde(default = \"yes\")]\n    pub flag: bool,\n    pub maybe: Option<String>,\n}\n"
        "pub fn thing(request: ThingRequest) -> Result<ThingReply> { let _ = '{'; todo!() }\n"
    )
    (src / "abi.rs").write_text(
        "#[unsafe(no_mangle)]\npub unsafe extern \"C\" fn uv_ffi_thing(request: *const c_char) -> *mut c_char {\n"
        "    unsafe { call(request, ops::thing) }\n}\n"
    )
    header = tmp_path / "thing.h"
    header.write_text(
        "/* Envelope. */\n\n"
        "/* Request {\"name\": str, \"flag\"?: bool, \"maybe\": str}.\n"
        " * Value {\"exitCode\": int, \"kind\": first_one, \"inner_one\": bool, \"ghost\": 1}. */\n"
        "char *uv_ffi_thing(const char *request);\n"
    )
    checker = Checker(str(header), str(src), str(tmp_path))
    reply = checker.lookup("ThingReply", "Serialize")
    assert [(f.name, f.ser_name, f.flatten) for f in reply.fields] == [
        ("exit_code", "exitCode", False), ("type", "kind", False), ("hidden", None, False),
        ("maybe", "maybe", False), ("extra", "extra", True)]
    assert checker.lookup("Kind", "Serialize").variants == [("first_one", True), ("two", True)]
    request = checker.lookup("ThingRequest", "Deserialize")
    assert [(f.de_name, f.optional_in) for f in request.fields] == [("name", False), ("flag", True), ("maybe", True)]
    assert checker.ops == {"thing": ("ThingRequest", "ThingReply", str(src / "ops.rs"))}
    checker.check_json_functions()
    problems = checker.problems
    assert problems["mapping"] == [], problems
    # "two" (a renamed variant) and "maybe" (skip_serializing_if still serialises) are missing;
    # "hidden" (skip) and "extra" (flatten: its fields are inlined) must not be asked for.
    missing = sorted(re.match(r'uv_ffi_thing: reply (?:field|value) "(\w+)"', p).group(1)
                     for p in problems["reply_fields"])
    assert missing == ["maybe", "two"], problems
    assert problems["request_optional"] == [
        'uv_ffi_thing: request field "maybe" (ThingRequest.maybe) may be omitted (serde default or Option) but '
        'the header writes it as required: "maybe": instead of "maybe"?:'], problems
    assert problems["documented_unknown"] == [
        'uv_ffi_thing: the header documents reply key "ghost" in Value {...}, but ThingReply (ops::thing) has no '
        "such field"], problems
