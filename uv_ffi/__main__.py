"""Command line: ``python -m uv_ffi run <uv command...>``, ``python -m uv_ffi demo``, and
``python -m uv_ffi --include`` / ``--libdir`` (where the header and library are, for C and Go)."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import List, Optional


def _run(words: List[str]) -> int:
    from . import UvFfiError, install
    from .magic import quiet
    from .progress import TerminalProgress

    if words and words[0] == "--":
        words = words[1:]
    # A progress line while a warm call runs, on a terminal only (none with -q).
    display = None if quiet(words) else TerminalProgress()
    if display is not None and not display.enabled:
        display = None
    try:
        result = install(words, progress=display)
    except UvFfiError as exc:
        if exc.kind == "failed":
            # uv's own command line ran: what it printed is the whole story, as uv printed it.
            sys.stdout.write(exc.stdout)
            sys.stderr.write(exc.stderr)
            return exc.exit_code
        text = exc.full_text()
        # uv's parser's messages carry their prefix ("error:"); the engine's carry none.
        plain = not text.lstrip().startswith(("error", "×"))
        print(("error: " + text) if plain else text, file=sys.stderr)
        return exc.exit_code
    finally:
        if display is not None:
            display.close()
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.engine == "warm":
        if result.satisfied:
            print("Already satisfied", file=sys.stderr)
        for name, version in result.removed:
            print(" - %s==%s" % (name, version))
        for name, version in result.installed:
            print(" + %s==%s" % (name, version))
    return result.exit_code


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["--include"], ["--libdir"]):
        # For C and Go builds: where the header and the library of this installation are.
        from . import paths

        print(paths.include_dir() if argv == ["--include"] else paths.library_dir())
        return 0
    if argv[:1] == ["run"]:
        # Everything after `run` is uv's command line, options included (`run --version`).
        return _run(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m uv_ffi", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run one command through the engine, e.g. run pip install rich")
    run.add_argument("words", nargs=argparse.REMAINDER)
    demo = sub.add_parser("demo", help="show the engine working offline, timed beside the uv command")
    demo.add_argument("--rounds", type=int, default=20, help="timed rounds per operation")
    args = parser.parse_args(argv)
    if args.action == "run":
        return _run(args.words)
    from .demo import main as demo_main

    return demo_main(rounds=args.rounds)


if __name__ == "__main__":
    sys.exit(main())
