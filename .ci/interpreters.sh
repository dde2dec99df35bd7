#!/usr/bin/env bash
# One wheel, every interpreter: build the wheel once, check its platform tag with auditwheel, then
# install it into a fresh virtual environment of each CPython 3.8-3.13 (pyenv) and of PyPy
# (Debian's pypy3), from an empty folder, and run tests/smoke there. Prints the table
# "interpreter | result"; any interpreter that fails or is missing makes the exit code non-zero.
#
#   .ci/interpreters.sh                  # build the wheel (reuses CARGO_TARGET_DIR), then test it
#   .ci/interpreters.sh --wheel FILE     # test a wheel built already
#
# Environment: PYTHON builds the wheel and runs auditwheel (default python3); PYENV_ROOT
# (default ~/.pyenv) holds the CPythons; CARGO_TARGET_DIR (default ~/.cache/uv-ffi/target) is
# shared with `pip install -e` (both build with the `dist` profile), so the Rust build is reused
# when it is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/uv-ffi/target}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_ROOT_USER_ACTION=ignore
PYTHON="${PYTHON:-python3}"
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
TOOLS="$HOME/.cache/uv-ffi/tools"
MINORS="8 9 10 11 12 13"
started=$(date +%s)

WHEEL=""
if [ "${1:-}" = "--wheel" ]; then
  WHEEL=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/uv-ffi-interpreters.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Print the end of a log, indented, when a step fails.
show_log() {
  echo "  --- last lines of $(basename "$1") ---"
  tail -n "${2:-40}" "$1" | sed 's/^/  | /'
}

echo "== wheel"
if [ -z "$WHEEL" ]; then
  t0=$(date +%s)
  if ! "$PYTHON" -m pip wheel . --no-deps -w "$WORK/dist" >"$WORK/wheel.log" 2>&1; then
    show_log "$WORK/wheel.log" 60
    echo "FAILED: pip wheel ." >&2
    exit 1
  fi
  WHEEL=$(ls "$WORK"/dist/uv_ffi-*.whl)
  echo "built $(basename "$WHEEL") in $(( $(date +%s) - t0 )) s ($(du -h "$WHEEL" | cut -f1))"
else
  echo "using $WHEEL"
fi

# What the wheel holds: the library under a name with no interpreter tag, the header, the cffi
# module; not the test-only helpers. Its WHEEL file's tag must match its file name.
"$PYTHON" - "$WHEEL" <<'EOF'
import re, sys, zipfile
path = sys.argv[1]
names = zipfile.ZipFile(path).namelist()
problems = []
for needed in ("uv_ffi/_uv_ffi_lib.so", "uv_ffi/include/uv_ffi.h", "uv_ffi/_native_ffi.py",
               "uv_ffi/paths.py", "uv_ffi/py.typed"):
    if needed not in names:
        problems.append("missing " + needed)
for name in names:
    if name.startswith("uv_ffi/_uv_ffi_lib") and name != "uv_ffi/_uv_ffi_lib.so":
        problems.append("extra library " + name)
    if name.startswith("uv_ffi/sample_index"):
        problems.append("test-only module shipped: " + name)
    if name.startswith(("tests/", "build_ffi")):
        problems.append("not part of the package: " + name)
wheel_meta = [n for n in names if n.endswith(".dist-info/WHEEL")][0]
meta = zipfile.ZipFile(path).read(wheel_meta).decode()
tag = re.search(r"^Tag: (.+)$", meta, re.M).group(1).strip()
file_tag = "-".join(path.rsplit("/", 1)[-1][: -len(".whl")].split("-")[-3:])
if tag != file_tag:
    problems.append("WHEEL says %s, the file name %s" % (tag, file_tag))
if not tag.startswith("py3-none-"):
    problems.append("tag %s is not py3-none-<platform>" % tag)
print("contents: %d files, tag %s; library uv_ffi/_uv_ffi_lib.so, header uv_ffi/include/uv_ffi.h, "
      "no sample_index" % (len(names), tag))
if problems:
    print("\n".join("WHEEL PROBLEM: " + p for p in problems))
    sys.exit(1)
EOF

echo "== auditwheel show"
AUDITWHEEL=$(command -v auditwheel || true)
if [ -z "$AUDITWHEEL" ]; then
  if [ ! -x "$TOOLS/bin/auditwheel" ]; then
    "$PYTHON" -m venv "$TOOLS" && "$TOOLS/bin/python" -m pip install -q auditwheel
  fi
  AUDITWHEEL="$TOOLS/bin/auditwheel"
fi
"$AUDITWHEEL" show "$WHEEL" | tee "$WORK/auditwheel.txt"
plat=$(basename "$WHEEL" .whl); plat=${plat##*-}
confirmed=$(tr '\n' ' ' <"$WORK/auditwheel.txt" | grep -o 'following platform tag: *"[^"]*"' | head -1 | sed 's/.*"\(.*\)"/\1/')
if [ "$confirmed" != "$plat" ]; then
  echo "FAILED: the wheel is tagged $plat but auditwheel finds it consistent with '${confirmed:-nothing}'" >&2
  exit 1
fi
echo "auditwheel confirms $plat (glibc floor $(echo "$plat" | sed -n 's/^manylinux_\([0-9]*\)_\([0-9]*\)_.*/\1.\2/p'))"

echo "== interpreters"
# The smoke suite runs from a copy, outside the source tree, so `import uv_ffi` is the wheel's.
mkdir -p "$WORK/smoke"
cp "$ROOT"/tests/smoke/*.py "$WORK/smoke/"

NAMES=()
RESULTS=()
FAILED=0

record() {  # name, result
  NAMES+=("$1")
  RESULTS+=("$2")
  case "$2" in PASS*) ;; *) FAILED=1 ;; esac
  echo "$1: $2"
}

# Install the wheel into a fresh venv of interpreter $2 and run the smoke suite with it.
check() {
  local name=$1 python=$2 slug
  slug=$(echo "$name" | tr -c 'A-Za-z0-9.\n' '-')
  local dir="$WORK/$slug" log="$WORK/$slug.log"
  local venv_py="$dir/venv/bin/python"
  mkdir -p "$dir/clean"
  local version
  version=$("$python" -c 'import platform, sys; impl = platform.python_implementation(); print(impl, platform.python_version() + (" (PyPy %d.%d.%d)" % sys.pypy_version_info[:3] if impl == "PyPy" else ""))' 2>>"$log") || version="?"
  if ! "$python" -m venv "$dir/venv" >>"$log" 2>&1; then
    show_log "$log"; record "$name" "FAIL: python -m venv ($version)"; return
  fi
  if ! (cd "$dir/clean" && "$venv_py" -m pip install "$WHEEL" pytest) >>"$log" 2>&1; then
    show_log "$log"; record "$name" "FAIL: pip install of the wheel ($version)"; return
  fi
  if ! (cd "$dir/clean" && env -u UV_FFI_LIBRARY -u PYTHONPATH UV_FFI_SMOKE_WHEEL=1 \
        UV_CACHE_DIR="$dir/uv-cache" "$venv_py" -m pytest -q -rs -p no:cacheprovider \
        --rootdir "$WORK/smoke" "$WORK/smoke") >>"$log" 2>&1; then
    show_log "$log"; record "$name" "FAIL: smoke tests ($version)"; return
  fi
  local summary
  summary=$(grep -E '^[0-9]+ passed' "$log" | tail -1 | sed 's/^=* *//; s/ *=*$//' || true)
  record "$name" "PASS  $version; $summary"
}

for minor in $MINORS; do
  python=$(ls -d "$PYENV_ROOT"/versions/3."$minor".* 2>/dev/null | grep -E "/3\.$minor\.[0-9]+$" | sort -V | tail -1 || true)
  if [ -n "$python" ] && [ -x "$python/bin/python" ]; then
    check "CPython 3.$minor" "$python/bin/python"
  else
    record "CPython 3.$minor" "MISSING: no $PYENV_ROOT/versions/3.$minor.*/bin/python"
  fi
done

# PyPy from Debian: pypy3 (the interpreter) and pypy3-venv (ensurepip, for venvs).
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi; }
if ! command -v pypy3 >/dev/null || ! pypy3 -c 'import ensurepip' >/dev/null 2>&1; then
  echo "installing Debian's pypy3 pypy3-venv"
  if command -v apt-get >/dev/null; then
    as_root apt-get update -qq >"$WORK/apt.log" 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pypy3 pypy3-venv >>"$WORK/apt.log" 2>&1 || show_log "$WORK/apt.log" 10
  fi
fi
if command -v pypy3 >/dev/null; then
  check "PyPy 3 (Debian pypy3)" "$(command -v pypy3)"
else
  why="not on PATH"
  command -v apt-cache >/dev/null && why="not installable: $(apt-cache policy pypy3 2>/dev/null | grep -m1 Candidate | xargs)"
  record "PyPy 3 (Debian pypy3)" "MISSING: pypy3 $why"
fi

echo
echo "== interpreters proved with $(basename "$WHEEL")"
printf '%-24s | %s\n' "interpreter" "result"
printf '%-24s-+-%s\n' "------------------------" "--------------------------------------------------------"
for i in "${!NAMES[@]}"; do
  printf '%-24s | %s\n' "${NAMES[$i]}" "${RESULTS[$i]}"
done
echo "== interpreters wall time: $(( $(date +%s) - started )) s"
exit "$FAILED"
