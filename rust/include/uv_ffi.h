/*
 * uv_ffi.h -- the C ABI of uv-ffi: uv's resolver and installer kept resident in memory.
 *
 * This header is the only place the functions are declared, and the only place their JSON
 * requests and replies are documented; build_ffi.py feeds it to cffi. Keep it plain C
 * declarations: cffi's parser reads everything below except '#' lines. tests/test_header.py
 * fails when a function or a JSON field of the library is missing here, or the other way round.
 *
 * ABI version (uv_ffi_info's "abi_version"): bumped whenever a function is removed or renamed,
 * a request field changes meaning, or a reply field is removed or changes type (a new optional
 * request field or a new reply field does not bump it). The Python package refuses to load a
 * library whose version differs from its own.
 *
 * Conventions
 *   - Every uv_ffi_* function takes one borrowed, NUL-terminated UTF-8 JSON request and returns
 *     a NUL-terminated UTF-8 JSON reply that the CALLER OWNS and must release exactly once with
 *     uv_ffi_string_free(). A NULL request is answered with an error reply, never a crash.
 *   - Every reply is an envelope:
 *       {"ok": true,  "value": {...}}
 *       {"ok": false, "error": {"kind": str, "message": str, "hints": [str], "exit_code": int,
 *                             "retry"?: "fresh_index", "stdout"?: str, "stderr"?: str,
 *                             "read"?: {...}}}
 *     kind is one of: invalid_json, invalid_command, invalid_requirement, python_not_found,
 *     externally_managed, resolution, index, install, panic, failed, stale_plan, stopped,
 *     internal.
 *     "stale_plan": uv_ffi_plan_apply found no such plan, or the environment changed since.
 *     "stopped": the call stopped because uv_ffi_progress asked it to (the message says what
 *     was changed, if anything).
 *     "failed": a command run through uv's own command line ended with a non-zero exit code;
 *     message is what it printed to stderr, and stdout/stderr hold its whole output. A read
 *     command answered by the engine that exits non-zero (pip check finding problems, pip show
 *     finding nothing) is reported the same way, with "read" (see uv_ffi_run).
 *   - No panic crosses this boundary: a panic is caught and answered with kind "panic".
 *   - Calls may come from any thread; work runs on the engine's own thread, one call at a time.
 *   - Nothing is printed unless asked (a command's -v, or UV_FFI_LOG=1; UV_FFI_PROFILE=1 prints
 *     per-phase timings to stderr). Commands run through uv's own command line have their
 *     output captured into the reply (file descriptors 1 and 2 are redirected for that call).
 */
#ifndef UV_FFI_H
#define UV_FFI_H

#ifdef __cplusplus
extern "C" {
#endif

/* Request {}.  Value {"abi_version": int, "version": str, "uv_version": str}. */
char *uv_ffi_info(const char *request);

/* Request {"command"?: str, "argv"?: [str], "cwd"?: str}: exactly one of command (a command
 * line, split by shell rules) and argv (the words).  Understands the command as uv 0.12.5
 * would, without running it.
 * Value {"argv": [str], "fast": {"command": "pip_install"|"pip_uninstall", ...}|null,
 *        "route": "warm"|"read"|"uv"|"printed"|"error", "warm": {...}|null, "explicit": [str],
 *        "error": str|null, "fast_read": str|null, "read": str|null}.
 * fast: the hot path's own parser (null where it leaves the command to uv's parser); warm: the
 * warm engine's arguments as read from uv's parse when route is "warm" ("read": pip list,
 * freeze, show or check answered from the engine's snapshot); explicit: the clap ids
 * of the options given on the command line or through their UV_* variables; error: uv's
 * message when its parser refuses the command; fast_read: the hot path's parser of pip list,
 * freeze and show (null where it leaves the command to uv's parser) and read: the read as uv's
 * parser routed it (null unless route is "read"), each a rendering of the command and its
 * options, equal when the two parsers agree. */
char *uv_ffi_parse(const char *request);

/* Request {"command"?: str, "argv"?: [str], "cwd"?: str, "check"?: bool = true,
 *          "heal"?: bool = true, "fresh_index"?: bool = false, "index_ttl_ms"?: int = 600000,
 *          "retry_fresh_index"?: bool = true, "plan"?: bool = false, "progress"?: bool = false}.
 * Runs any uv command (an optional leading "uv", then what a user would type after it).
 * "pip install" and "pip uninstall" run on the warm engine when it honours every option given,
 * no uv configuration file applies and no UV_* variable it does not read is set; anything else
 * runs through uv's own command line in this process ("engine": "uv"), and --help/--version are
 * answered by uv's parser ("engine": "printed").  pip list, pip freeze, pip show and pip check
 * are answered by the engine from its snapshot of the environment ("engine": "view"), with the
 * exact text uv prints in stdout/stderr and the answer as data in "read", when every option
 * given is one it honours (the environment options, --format, --editable, --exclude-editable,
 * --exclude, --strict, --files, -q, --color never/auto) and, as for the warm path, no
 * configuration file or unread UV_* variable applies; otherwise (--outdated, -v, freeze --path,
 * check --python-version, ...) uv's command line runs them.  Commands that would change the host process
 * (run, tool run, add, publish, auth login, auth helper, --directory) are refused with kind invalid_command.
 * command/argv: exactly one (see uv_ffi_parse).  cwd: the directory relative paths are resolved
 * against (the process's by default; commands run through uv's command line require the
 * process's own).  check: compare the environment's fingerprint with the disk before trusting
 * the view; heal: rescan and retry once if an install meets a view that disagrees with the
 * disk.  Index pages read by a call are kept in memory for later calls with the same
 * interpreter and indexes, for at most index_ttl_ms; fresh_index reads them again (and
 * revalidates the HTTP cache).  An error from a call that used kept pages carries
 * "retry": "fresh_index": the same call may succeed with fresh pages; unless retry_fresh_index is false the
 * engine retries such a call once itself, with fresh pages, and the reply says so in
 * "index_retried".
 * plan: the install-plan hook, in two phases. A warm pip install / pip uninstall stops once it
 * knows what it would do, changes nothing, and answers with "plan"; if the plan changes
 * anything (and it is not a dry run) the engine keeps it and answers with "plan_id". Then
 * uv_ffi_plan_apply carries out exactly that plan (its kept resolution: nothing is resolved
 * again) or uv_ffi_plan_discard drops it. Commands run through uv's command line ignore
 * "plan" (their reply has "plan": null).
 * progress: a warm call records progress events (uv's own reporter hooks), which another thread
 * may take while it runs with uv_ffi_progress; the reply's "progress" holds those no poll took.
 * Commands run through uv's command line record none (their reply has "progress": null). One
 * call records at a time. An event is an object with "event" and, by kind:
 *   "phase": "phase" ("resolve"|"prepare"|"uninstall"|"install") and "total" (items, 0 when
 *            not known in advance);
 *   "resolved", "prepared" (a wheel unpacked in the cache), "uninstalled", "installed": "name",
 *            "version";
 *   "download_start": "id", "name", "total_bytes" (int|null); "download_progress": "id",
 *            "bytes" (so far); "download_done": "id", "name";
 *   "build_start", "build_done": "id", "name".
 * Value {"exit_code": int, "installed": [[name, version]], "removed": [[name, version]],
 *        "error": "", "environment": str|null, "target": str|null, "satisfied": bool,
 *        "dry_run": bool, "engine": "warm"|"view"|"uv"|"printed", "stdout": str,
 *        "stderr": str, "index_retried": bool, "plan": [[name, version, action]]|null,
 *        "plan_id": int|null, "progress": [event]|null, "read"?: {...},
 *        "timings_us": [[phase, int]]}.
 * timings_us: microseconds per phase, always the value's last member: the text before it is
 * the same in two replies with the same value otherwise, so a host may keep decoded replies by
 * that text.
 * read (engine "view" only): {"command": "list"|"freeze"|"show"|"check",
 *   "packages"?: [package] (list, freeze: the distributions reported, in uv's order),
 *   "show"?: [shown] (show), "missing"?: [str] (show: names not installed),
 *   "problems"?: [str] (check, and --strict: uv's message for each problem)}.
 *   A package is {"name", "version", "location" (the folder holding its metadata), "kind"
 *   ("registry"|"url"|"egg_info_file"|"egg_info_directory"|"legacy_editable"), "editable": bool,
 *   "editable_project_location": str|null, "url": str|null (the direct URL installed from),
 *   "installer": str|null (its INSTALLER file)}.
 *   A shown record is {"name", "version", "location", "editable_project_location": str|null,
 *   "requires": [str]|null, "required_by": [str]|null (null when its metadata is unreadable),
 *   "files": [str]|null (the RECORD paths, with --files)}.
 * plan (only when asked): sorted by name; action is "cached" (a wheel in uv's cache will be
 * linked), "remote" (will be downloaded or built; version is "" only here, for a URL),
 * "reinstall" (an installed distribution will be replaced) or "extraneous" (an installed
 * distribution will be removed: pip uninstall; pip install leaves unneeded distributions in
 * place, so its plans have none). Empty when nothing would change.  plan_id: the kept plan, for
 * uv_ffi_plan_apply / uv_ffi_plan_discard (the 16 newest undecided plans are kept).
 * Names are PEP 503-normalised and both lists are sorted; for commands run through uv's command
 * line they are the difference between the environment's view before and after.  environment:
 * the prefix acted on (null for commands that name none).  stdout/stderr: what uv printed (the
 * warm engine prints nothing).  exit_code is non-zero only for "printed" (uv alone, uv pip);
 * any other failure is an error envelope whose message is uv's own text. */
char *uv_ffi_run(const char *request);

/* Request {"plan_id": int, "progress"?: bool = false}.  Carries out a plan kept by uv_ffi_run
 * with "plan": true, if the
 * distributions installed in its environment are still those it was planned against (else an
 * error of kind stale_plan, and nothing changes).  The plan is used up either way.
 * Value: as uv_ffi_run's, {"exit_code", "installed", "removed", "error", "environment",
 * "target", "satisfied", "dry_run", "engine", "stdout", "stderr", "index_retried", "plan",
 * "plan_id", "progress", "timings_us"}, with "plan" and "plan_id" null and no "read"; progress:
 * as uv_ffi_run's, events with ("event", "phase", "total", "name", "version", "id", "bytes", "total_bytes"). */
char *uv_ffi_plan_apply(const char *request);

/* Request {"plan_id": int, "progress"?: bool (ignored)}.  Drops a kept plan (the host took it over, or decided against it).
 * Value {"discarded": bool} (false: no such plan was waiting). */
char *uv_ffi_plan_discard(const char *request);

/* Request {"python"?: str, "target"?: str, "check"?: bool = false}.  Without python: the
 * environment of the last call.  target: a --target folder ("bubble"): that folder's view, with
 * the interpreter it was last used with (else the last call's).  The manifests of stash entries
 * that swaps left to the engine's idle work are written first, so that every stash on disk
 * agrees with the views.  Value {"environment": str|null,
 * "target": str|null, "packages": [[name, version]],
 * "counters": {"rescans", "checks_clean", "checks_listed", "settled_when_idle",
 * "changes_detected", "patches",
 * "resolutions_reused", "plans_reused", "reads", "stashed", "restored", "relinked",
 * "spares_used", "swapped_here", "heals": int}, "index_counters": {"reused", "fresh", "dropped_after_failure", "expired": int}}. */
char *uv_ffi_view_get(const char *request);

/* Request {"python"?: str, "target"?: str, "location"?: str, "installed"?: [[name, version]],
 * "removed"?: [[name, version]]}.  The view patched: of the --target folder target, else of the
 * environment (or --target folder) whose site-packages holds location (a .dist-info folder),
 * else of python's environment, else of the last call's.  Removals are applied first.  The next check lists the folders to confirm the disk agrees,
 * so a wrong patch costs a rescan, never a wrong view (except under check=false).
 * Value {"patched": bool} (false: no live view, nothing done). */
char *uv_ffi_view_patch(const char *request);

/* Request {"python"?: str, "target"?: str, "check"?: bool (ignored)}.  The next use rescans.
 * Value {"invalidated": bool}. */
char *uv_ffi_view_invalidate(const char *request);

/* Request {"python"?: str, "target"?: str, "check"?: bool (ignored)}.
 * Value {"environment": str|null, "site_packages": [{"path": str,
 * "exists": bool, "dev": int, "ino": int, "mtime_ns": int, "ctime_ns": int}]}. */
char *uv_ffi_view_fingerprint(const char *request);

/* Request {"stop"?: bool = false}.  From any thread, without waiting for the running call:
 * the progress events recorded since the last poll (see uv_ffi_run's "progress").  stop: ask the
 * recording call to stop before it changes anything (after resolving, or after downloading);
 * it then fails with kind "stopped". A call that has begun removing or linking files finishes.
 * Value {"events": [event], "running": bool, "stop_requested": bool}; events as uv_ffi_run's
 * ("event", "phase", "total", "name", "version", "id", "bytes", "total_bytes").  running: a call that
 * records progress is running; stop_requested: this poll asked it to stop. */
char *uv_ffi_progress(const char *request);

/* Request {"target"?: str}.  Forgets the views of one --target folder (with every interpreter
 * it was used with), or of every --target folder when target is absent; environments keep
 * theirs.  The engine keeps the views of the 16 --target folders used most recently.
 * Value {"forgotten": int}. */
char *uv_ffi_view_forget(const char *request);

/* Request {"python"?: str, "target"?: str}.  Empties the stash of swapped-out versions of one
 * environment (the one python names, else the last one used) or of one --target folder: the
 * folder .uv-ffi-stash in the virtual environment or in the --target folder.  When a warm swap
 * replaces a distribution the engine installed from an index wheel, its files are moved there
 * whole instead of deleted (UV_FFI_STASH=0 turns this off), and a later call that installs exactly
 * that wheel again (same cache archive, file name, hashes and cache info) moves them back, if
 * every file is as it was stashed.  The 16 most recent entries (at most 512 MiB) are kept.
 * Every entry goes; the folder and its journal stay (the next swap need not make them again).
 * Value {"cleared": bool (the stash held something), "folder": str|null (the stash folder
 * looked at)}. */
char *uv_ffi_stash_clear(const char *request);

/* Request {}.  The next resolution revalidates every index page.  Value {"cleared": true}. */
char *uv_ffi_index_clear(const char *request);

/* Request {"at"?: "call"|"start"}.  For tests.  "call" (default): panics on the engine
 * thread; the reply is an error of kind "panic".  "start": stops the engine and makes its next
 * start panic: the next call gets an error of kind "panic", the one after starts normally.
 * Value {}. */
char *uv_ffi_debug_panic(const char *request);

/* Free a reply returned by any uv_ffi_* function.  NULL is allowed. */
void uv_ffi_string_free(char *text);

/* Upstream-compatible: run cmd (any command, as uv_ffi_run) and write {"installed": [[n, v]],
 * "removed": [[n, v]], "error": str, "stdout"?: str} into out_json (NUL-terminated, at most
 * max_out bytes including the NUL).  stdout is present when the command printed something and
 * it fits; otherwise it is left out.
 * Returns the command's exit code (0 success, 1 failure, 2 usage error), or
 *   -1  cmd or out_json is NULL, or max_out < 64: nothing was run;
 *   -2  the command ran but its reply does not fit: out_json holds
 *       {"error": "buffer_too_small", "needed": N}. */
int omnipkg_uv_run_c(const char *cmd, char *out_json, int max_out);

#ifdef __cplusplus
}
#endif

#endif /* UV_FFI_H */
