/*
 * uv_ffi.h -- the C ABI of uv-ffi: uv's resolver and installer kept resident in memory.
 *
 * This header is the only place the functions are declared; build_ffi.py feeds it to cffi.
 * Keep it plain C declarations: cffi's parser reads everything below except '#' lines.
 * The request and reply schemas are documented in docs/abi.md.
 *
 * Conventions
 *   - Every uv_ffi_* function takes one borrowed, NUL-terminated UTF-8 JSON request and returns
 *     a NUL-terminated UTF-8 JSON reply that the CALLER OWNS and must release exactly once with
 *     uv_ffi_string_free(). A NULL request is answered with an error reply, never a crash.
 *   - Every reply is an envelope:
 *       {"ok": true,  "value": {...}}
 *       {"ok": false, "error": {"kind": str, "message": str, "hints": [str], "exit_code": int,
 *                             "retry"?: "fresh_index"}}
 *     kind is one of: invalid_json, invalid_command, invalid_requirement, python_not_found,
 *     externally_managed, resolution, index, install, panic, internal.
 *   - No panic crosses this boundary: a panic is caught and answered with kind "panic".
 *   - Calls may come from any thread; work runs on the engine's own thread, one call at a time.
 *   - Nothing is printed unless asked (a command's -v, or UV_FFI_LOG=1; UV_FFI_PROFILE=1 prints
 *     per-phase timings to stderr).
 */
#ifndef UV_FFI_H
#define UV_FFI_H

#ifdef __cplusplus
extern "C" {
#endif

/* Request {}.  Value {"abi_version": int, "version": str, "uv_version": str}. */
char *uv_ffi_info(const char *request);

/* Request {"command": str}.  Tokenize (shell rules) and parse without running.
 * Value {"argv": [str], "parsed": {"command": "pip_install", ...options}}. */
char *uv_ffi_parse(const char *request);

/* Request {"command": str, "cwd"?: str, "check"?: bool = true, "heal"?: bool = true,
 *          "fresh_index"?: bool = false, "index_ttl_ms"?: int = 600000}.
 * Runs the command ("pip install ..." or "pip uninstall ..."). check: compare the environment's fingerprint with the
 * disk before trusting the view; heal: rescan and retry once if an install meets a view that
 * disagrees with the disk.  Index pages read by a call are kept in memory for later calls with
 * the same interpreter and indexes, for at most index_ttl_ms; fresh_index reads them again (and
 * revalidates the HTTP cache).  An error from a call that used kept pages carries
 * "retry": "fresh_index": the same call may succeed with fresh pages.
 * Value {"exit_code": 0, "installed": [[name, version]], "removed": [[name, version]],
 *        "error": "", "environment": str, "target": str|null, "satisfied": bool,
 *        "dry_run": bool, "timings_us": [[phase, int]]}.  Names are PEP 503-normalised and
 * both lists are sorted.  A failure is an error envelope whose message is uv's own text. */
char *uv_ffi_run(const char *request);

/* Request {"python"?: str, "check"?: bool = false}.  Without python: the environment of the
 * last call.  Value {"environment": str|null, "packages": [[name, version]],
 * "counters": {"rescans", "checks_clean", "checks_listed", "changes_detected", "patches",
 * "heals": int}, "index_counters": {"reused", "fresh", "dropped_after_failure", "expired": int}}. */
char *uv_ffi_view_get(const char *request);

/* Request {"python"?: str, "installed": [[name, version]], "removed": [[name, version]]}.
 * Removals are applied first.  The next check lists the folders to confirm the disk agrees,
 * so a wrong patch costs a rescan, never a wrong view (except under check=false).
 * Value {"patched": bool} (false: no live view, nothing done). */
char *uv_ffi_view_patch(const char *request);

/* Request {"python"?: str}.  The next use rescans.  Value {"invalidated": bool}. */
char *uv_ffi_view_invalidate(const char *request);

/* Request {"python"?: str}.  Value {"environment": str|null, "site_packages": [{"path": str,
 * "exists": bool, "dev": int, "ino": int, "mtime_ns": int, "ctime_ns": int}]}. */
char *uv_ffi_view_fingerprint(const char *request);

/* Request {}.  The next resolution revalidates every index page.  Value {"cleared": true}. */
char *uv_ffi_index_clear(const char *request);

/* Request {}.  Panics on the engine thread; the reply is an error of kind "panic". For tests. */
char *uv_ffi_debug_panic(const char *request);

/* Free a reply returned by any uv_ffi_* function.  NULL is allowed. */
void uv_ffi_string_free(char *text);

/* Upstream-compatible: run cmd and write {"installed": [[n, v]], "removed": [[n, v]],
 * "error": str} into out_json (NUL-terminated, at most max_out bytes including the NUL).
 * Returns the command's exit code (0 success, 1 failure, 2 usage error), or
 *   -1  cmd or out_json is NULL, or max_out < 64: nothing was run;
 *   -2  the command ran but its reply does not fit: out_json holds
 *       {"error": "buffer_too_small", "needed": N}. */
int omnipkg_uv_run_c(const char *cmd, char *out_json, int max_out);

#ifdef __cplusplus
}
#endif

#endif /* UV_FFI_H */
