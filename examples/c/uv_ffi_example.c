/*
 * uv_ffi_example.c -- drive uv-ffi's C ABI from plain C.
 *
 * Build (see the Makefile beside this file, which does exactly this):
 *
 *   LIB=$(python -c "from uv_ffi import _native; print(_native._library_path())")
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -I../../rust/include uv_ffi_example.c \
 *      "$LIB" -Wl,-rpath,"$(dirname "$LIB")" -o uv_ffi_example
 *
 * Run:
 *
 *   ./uv_ffi_example /path/to/venv/bin/python http://127.0.0.1:8080/simple/ alpha==1.0 alpha==1.1 \
 *       [zeta==1.0 delta==1.0]
 *
 * The two specs must be NAME==VERSION with the same PEP 503-normalised NAME (lower case,
 * runs of "-_." written as "-"), so that the replies can be checked for the exact pairs.
 * The optional last two (also NAME==VERSION, normalised, not installed yet, each with no
 * dependency to install) are for step 8, which is left out without them.
 *
 * Steps, one line each ("ok" or "FAIL"); the exit status is the number of failed steps (capped
 * at 100), so 0 means every reply was the expected one:
 *   1. uv_ffi_info
 *   2. uv_ffi_run installs version A
 *   3. uv_ffi_run swaps to version B
 *   4. uv_ffi_view_get shows B and not A
 *   4b. fork(): the child (a fresh engine of its own) finds B already installed; the parent
 *      waits at most 60 s, so a hang is a failure, not a stuck run (left out when
 *      UV_FFI_EXAMPLE_NO_FORK is set, as under valgrind)
 *   5. invalid JSON, a command that is not pip install/uninstall, an unknown request field and a
 *      NULL request all get an error envelope ("ok": false) of the right kind
 *   6. omnipkg_uv_run_c with a 64-byte buffer for a command whose reply does not fit: -2, the
 *      buffer holds {"error":"buffer_too_small","needed":N} and nothing past 64 bytes is written;
 *      the same command with an N-byte buffer then fits
 *   7. omnipkg_uv_run_c with NULL arguments or a buffer below 64 bytes: -1 and nothing is run
 *      (the swap back to A that step 7 asks for must not happen: the caller checks the disk)
 *   8. the two-phase install plan: uv_ffi_run with "plan": true for the first optional spec
 *      answers a "plan" listing it ("remote" or "cached") and a "plan_id", and changes nothing;
 *      uv_ffi_plan_discard drops it ({"discarded":true}, then false for the same id); the
 *      second optional spec is planned the same way and uv_ffi_plan_apply installs it; applying
 *      that id again is refused with kind "stale_plan". The caller checks the disk: the first
 *      spec is not installed, the second is.
 * Every reply is released with uv_ffi_string_free.
 *
 * JSON is checked with strstr on the library's compact serde_json output ("ok":true with no
 * spaces). That is enough for an example; a real client should use a JSON parser (the Go example
 * does).
 */
#define _POSIX_C_SOURCE 200809L /* fork, waitpid, kill, nanosleep */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uv_ffi.h"

static int failures = 0;

static void report(int ok, const char *step, const char *detail) {
    printf("%s %s: %s\n", ok ? "ok  " : "FAIL", step, detail ? detail : "");
    fflush(stdout);
    if (!ok) {
        failures++;
    }
}

/* A growable string; every helper aborts on allocation failure (an example, not a library). */
typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static void buf_putc(buf_t *b, char c) {
    if (b->len + 2 > b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->data = realloc(b->data, b->cap);
        if (!b->data) {
            perror("realloc");
            exit(100);
        }
    }
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

static void buf_puts(buf_t *b, const char *s) {
    while (*s) {
        buf_putc(b, *s++);
    }
}

/* Append s as the inside of a JSON string literal. */
static void buf_put_json(buf_t *b, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf_putc(b, '\\');
            buf_putc(b, (char)c);
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_puts(b, esc);
        } else {
            buf_putc(b, (char)c);
        }
    }
}

/* Append s as one shell word: the engine tokenizes commands with shell rules. */
static void buf_put_shell(buf_t *b, const char *s) {
    buf_putc(b, '\'');
    for (; *s; s++) {
        if (*s == '\'') {
            buf_puts(b, "'\\''");
        } else {
            buf_putc(b, *s);
        }
    }
    buf_putc(b, '\'');
}

/* "pip install --python 'PY' -i 'URL' 'SPEC'" (caller frees). */
static char *install_command(const char *python, const char *index, const char *spec) {
    buf_t b = {0};
    buf_puts(&b, "pip install --python ");
    buf_put_shell(&b, python);
    buf_puts(&b, " -i ");
    buf_put_shell(&b, index);
    buf_putc(&b, ' ');
    buf_put_shell(&b, spec);
    return b.data;
}

/* {"command": "<cmd>"} (caller frees). */
static char *run_request(const char *cmd) {
    buf_t b = {0};
    buf_puts(&b, "{\"command\": \"");
    buf_put_json(&b, cmd);
    buf_puts(&b, "\"}");
    return b.data;
}

/* [["name","version"]] exactly as the library writes a one-pair list (caller frees). */
static char *pair_list(const char *name, const char *version) {
    buf_t b = {0};
    buf_puts(&b, "[[\"");
    buf_put_json(&b, name);
    buf_puts(&b, "\",\"");
    buf_put_json(&b, version);
    buf_puts(&b, "\"]]");
    return b.data;
}

/* ["name","version"] (caller frees). */
static char *pair(const char *name, const char *version) {
    buf_t b = {0};
    buf_puts(&b, "[\"");
    buf_put_json(&b, name);
    buf_puts(&b, "\",\"");
    buf_put_json(&b, version);
    buf_puts(&b, "\"]");
    return b.data;
}

static char *concat3(const char *a, const char *b, const char *c) {
    buf_t out = {0};
    buf_puts(&out, a);
    buf_puts(&out, b);
    buf_puts(&out, c);
    return out.data;
}

static int contains(const char *text, const char *needle) {
    return text != NULL && strstr(text, needle) != NULL;
}

/* Split "name==version" into two malloc'd strings; 0 if the spec has another shape. */
static int split_spec(const char *spec, char **name, char **version) {
    const char *eq = strstr(spec, "==");
    if (eq == NULL || eq == spec || eq[2] == '\0') {
        return 0;
    }
    size_t n = (size_t)(eq - spec);
    *name = malloc(n + 1);
    *version = malloc(strlen(eq + 2) + 1);
    if (!*name || !*version) {
        perror("malloc");
        exit(100);
    }
    memcpy(*name, spec, n);
    (*name)[n] = '\0';
    strcpy(*version, eq + 2);
    return 1;
}

/* Run one uv_ffi_run request and check the envelope; the reply is freed here.
 * "installed":[["n","v"]] only matches a list of exactly that one pair ("]]" closes it), and
 * "removed":[] only an empty list. */
static void step_install(const char *step, const char *python, const char *index,
                         const char *spec, const char *name, const char *version,
                         const char *removed_version) {
    char *cmd = install_command(python, index, spec);
    char *request = run_request(cmd);
    char *reply = uv_ffi_run(request);
    char *installed = pair_list(name, version);
    char *want_installed = concat3("\"installed\":", installed, "");
    char *want_removed;
    if (removed_version) {
        char *removed = pair_list(name, removed_version);
        want_removed = concat3("\"removed\":", removed, "");
        free(removed);
    } else {
        want_removed = concat3("\"removed\":", "[]", "");
    }
    int ok = contains(reply, "\"ok\":true") && contains(reply, want_installed) &&
             contains(reply, want_removed) && contains(reply, "\"exit_code\":0");
    report(ok, step, reply);
    uv_ffi_string_free(reply);
    free(want_removed);
    free(want_installed);
    free(installed);
    free(request);
    free(cmd);
}

/* {"plan_id": N} (caller frees). */
static char *plan_id_request(long id) {
    char text[64];
    snprintf(text, sizeof text, "{\"plan_id\": %ld}", id);
    return concat3(text, "", "");
}

/* "plan":[["name","version","action"]] exactly as the library writes a one-entry plan. */
static char *plan_field(const char *name, const char *version, const char *action) {
    char *entry = pair(name, version); /* ["name","version"] */
    entry[strlen(entry) - 1] = '\0';  /* drop the closing ] */
    char *quoted = concat3(",\"", action, "\"]]");
    char *field = concat3("\"plan\":[", entry, quoted);
    free(quoted);
    free(entry);
    return field;
}

/* The reply's non-null "plan_id", or -1. */
static long plan_id_of(const char *reply) {
    const char *at = reply ? strstr(reply, "\"plan_id\":") : NULL;
    if (at == NULL) {
        return -1;
    }
    at += strlen("\"plan_id\":");
    char *end = NULL;
    long id = strtol(at, &end, 10);
    return end == at ? -1 : id;
}

/* 8a. uv_ffi_run with "plan": true for spec: a one-entry plan to fetch or link it, and a kept
 * plan_id (returned, -1 on failure); nothing installed or removed yet. */
static long step_plan(const char *step, const char *python, const char *index, const char *spec) {
    char *name = NULL, *version = NULL;
    if (!split_spec(spec, &name, &version)) {
        report(0, step, "not NAME==VERSION");
        return -1;
    }
    char *cmd = install_command(python, index, spec);
    buf_t request = {0};
    buf_puts(&request, "{\"command\": \"");
    buf_put_json(&request, cmd);
    buf_puts(&request, "\", \"plan\": true}");
    char *reply = uv_ffi_run(request.data);
    char *remote = plan_field(name, version, "remote");
    char *cached = plan_field(name, version, "cached");
    long id = plan_id_of(reply);
    int ok = contains(reply, "\"ok\":true") && (contains(reply, remote) || contains(reply, cached)) &&
             contains(reply, "\"installed\":[]") && contains(reply, "\"removed\":[]") && id >= 0;
    report(ok, step, reply);
    uv_ffi_string_free(reply);
    free(cached);
    free(remote);
    free(request.data);
    free(cmd);
    free(version);
    free(name);
    return ok ? id : -1;
}

/* 8b. uv_ffi_plan_discard: "discarded" must be `expected` ("true" or "false"). */
static void step_discard(const char *step, long id, const char *expected) {
    char *request = plan_id_request(id);
    char *reply = uv_ffi_plan_discard(request);
    char *want = concat3("\"discarded\":", expected, "}");
    report(contains(reply, "\"ok\":true") && contains(reply, want), step, reply);
    uv_ffi_string_free(reply);
    free(want);
    free(request);
}

/* 8c. uv_ffi_plan_apply installs exactly spec, removes nothing, and answers no new plan. */
static void step_apply(const char *step, long id, const char *spec) {
    char *name = NULL, *version = NULL;
    if (!split_spec(spec, &name, &version)) {
        report(0, step, "not NAME==VERSION");
        return;
    }
    char *request = plan_id_request(id);
    char *reply = uv_ffi_plan_apply(request);
    char *installed = pair_list(name, version);
    char *want_installed = concat3("\"installed\":", installed, "");
    int ok = contains(reply, "\"ok\":true") && contains(reply, want_installed) &&
             contains(reply, "\"removed\":[]") && contains(reply, "\"exit_code\":0") &&
             contains(reply, "\"plan\":null") && contains(reply, "\"plan_id\":null");
    report(ok, step, reply);
    uv_ffi_string_free(reply);
    free(want_installed);
    free(installed);
    free(request);
    free(version);
    free(name);
}

/* 8d. uv_ffi_plan_apply with a used-up id: an error envelope of kind stale_plan. */
static void step_stale(const char *step, long id) {
    char *request = plan_id_request(id);
    char *reply = uv_ffi_plan_apply(request);
    report(contains(reply, "\"ok\":false") && contains(reply, "\"kind\":\"stale_plan\"") &&
               !contains(reply, "\"ok\":true"),
           step, reply);
    uv_ffi_string_free(reply);
    free(request);
}

/* 8. plan the first spec and discard it; plan the second and apply it, once only. */
static void step_plans(const char *python, const char *index, const char *discard_spec,
                       const char *apply_spec) {
    long dropped = step_plan("plan to discard", python, index, discard_spec);
    step_discard("discard", dropped, "true");
    step_discard("discard again", dropped, "false");
    long kept = step_plan("plan to apply", python, index, apply_spec);
    step_apply("apply", kept, apply_spec);
    step_stale("apply again", kept);
}

/* Send a request that must be refused with an error envelope of `kind`. */
static void step_refused(const char *step, const char *request, const char *kind) {
    char *reply = uv_ffi_run(request);
    char *want_kind = concat3("\"kind\":\"", kind, "\"");
    int ok = contains(reply, "\"ok\":false") && contains(reply, "\"error\":{") &&
             contains(reply, want_kind) && !contains(reply, "\"ok\":true");
    report(ok, step, reply);
    uv_ffi_string_free(reply);
    free(want_kind);
}

#define SENTINEL 16

int main(int argc, char **argv) {
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: %s PYTHON INDEX_URL NAME==A NAME==B [PLAN==X APPLY==Y]\n",
                argv[0]);
        return 100;
    }
    const char *python = argv[1], *index = argv[2], *spec_a = argv[3], *spec_b = argv[4];
    char *name = NULL, *ver_a = NULL, *name_b = NULL, *ver_b = NULL;
    if (!split_spec(spec_a, &name, &ver_a) || !split_spec(spec_b, &name_b, &ver_b) ||
        strcmp(name, name_b) != 0) {
        fprintf(stderr, "specs must be NAME==A NAME==B with the same NAME\n");
        free(name);
        free(ver_a);
        free(name_b);
        free(ver_b);
        return 100;
    }
    free(name_b);

    /* 1. info */
    {
        char *reply = uv_ffi_info("{}");
        report(contains(reply, "\"ok\":true") && contains(reply, "\"abi_version\":") &&
                   contains(reply, "\"uv_version\":"),
               "info", reply);
        uv_ffi_string_free(reply);
    }

    /* 2. install A, 3. swap to B */
    step_install("install A", python, index, spec_a, name, ver_a, NULL);
    step_install("swap to B", python, index, spec_b, name, ver_b, ver_a);

    /* 4. the engine's view of the environment */
    {
        buf_t request = {0};
        buf_puts(&request, "{\"python\": \"");
        buf_put_json(&request, python);
        buf_puts(&request, "\", \"check\": true}");
        char *reply = uv_ffi_view_get(request.data);
        char *has_b = pair(name, ver_b);
        char *has_a = pair(name, ver_a);
        report(contains(reply, "\"ok\":true") && contains(reply, "\"packages\":[") &&
                   contains(reply, has_b) && !contains(reply, has_a),
               "view_get", reply);
        uv_ffi_string_free(reply);
        free(has_a);
        free(has_b);
        free(request.data);
    }

    /* 4b. a forked child starts an engine of its own */
    if (!getenv("UV_FFI_EXAMPLE_NO_FORK")) {
        buf_t request = {0};
        buf_puts(&request, "{\"command\": \"pip install --python ");
        buf_put_json(&request, python);
        buf_puts(&request, " -i ");
        buf_put_json(&request, index);
        buf_puts(&request, " ");
        buf_put_json(&request, spec_b);
        buf_puts(&request, "\"}");
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            char *reply = uv_ffi_run(request.data);
            int ok = contains(reply, "\"ok\":true") && contains(reply, "\"satisfied\":true");
            uv_ffi_string_free(reply);
            _exit(ok ? 0 : 1);
        }
        int status = -1, waited_ms = 0;
        struct timespec tick = {0, 50 * 1000 * 1000};
        while (child > 0 && waitpid(child, &status, WNOHANG) == 0 && waited_ms < 60000) {
            nanosleep(&tick, NULL);
            waited_ms += 50;
        }
        if (child > 0 && waited_ms >= 60000) {
            kill(child, SIGKILL);
            waitpid(child, &status, 0);
        }
        int ok = child > 0 && waited_ms < 60000 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        report(ok, "fork", ok ? "the child's own engine answered" : "the child failed or hung");
        free(request.data);
    }

    /* 5. requests that must be refused */
    step_refused("invalid JSON", "{\"command\": ", "invalid_json");
    step_refused("bad command", "{\"command\": \"pip frobnicate alpha\"}", "invalid_command");
    step_refused("unknown request field", "{\"command\": \"pip install alpha\", \"colour\": 1}",
                 "invalid_json");
    step_refused("NULL request", NULL, "invalid_json");

    /* 6. a reply that does not fit in 64 bytes: a version the index does not have, so uv's
     * "No solution found ..." explanation is the reply and the environment is not changed. */
    {
        buf_t spec = {0};
        buf_puts(&spec, name);
        buf_puts(&spec, "==0.0.0.post999");
        char *cmd = install_command(python, index, spec.data);
        char *out = malloc(64 + SENTINEL);
        if (!out) {
            perror("malloc");
            return 100;
        }
        memset(out, 'Z', 64 + SENTINEL);
        int code = omnipkg_uv_run_c(cmd, out, 64);
        int untouched = 1;
        for (int i = 64; i < 64 + SENTINEL; i++) {
            untouched &= out[i] == 'Z';
        }
        /* Nothing is read as a string before the NUL inside the 64 bytes is found. */
        long needed = 0;
        int terminated = memchr(out, '\0', 64) != NULL;
        const char *at = terminated ? strstr(out, "\"needed\":") : NULL;
        if (at) {
            needed = strtol(at + strlen("\"needed\":"), NULL, 10);
        }
        char detail[160];
        snprintf(detail, sizeof detail, "returned %d, buffer %s%s", code,
                 terminated ? out : "(not terminated)",
                 untouched ? "" : " -- WROTE PAST max_out");
        report(code == -2 && untouched && terminated &&
                   contains(terminated ? out : NULL, "\"error\":\"buffer_too_small\"") && needed > 64,
               "omnipkg_uv_run_c 64-byte buffer", detail);
        free(out);

        if (needed > 64 && needed < 1 << 20) {
            /* The same command with exactly `needed` bytes fits and reports uv's failure. */
            out = malloc((size_t)needed + SENTINEL);
            if (!out) {
                perror("malloc");
                return 100;
            }
            memset(out, 'Z', (size_t)needed + SENTINEL);
            code = omnipkg_uv_run_c(cmd, out, (int)needed);
            untouched = 1;
            for (long i = needed; i < needed + SENTINEL; i++) {
                untouched &= out[i] == 'Z';
            }
            terminated = memchr(out, '\0', (size_t)needed) != NULL;
            report(code == 1 && untouched && terminated && (long)strlen(out) + 1 == needed &&
                       contains(out, "\"installed\":[]") && contains(out, "\"removed\":[]") &&
                       contains(out, "No solution found"),
                   "omnipkg_uv_run_c needed-byte buffer", terminated ? out : "(not terminated)");
            free(out);
        } else {
            report(0, "omnipkg_uv_run_c needed-byte buffer", "no usable \"needed\" in the -2 reply");
        }
        free(cmd);
        free(spec.data);
    }

    /* 7. invalid arguments: nothing may run (a swap back to A would show on the disk). */
    {
        char *cmd = install_command(python, index, spec_a);
        char out[64 + SENTINEL];
        memset(out, 'Z', sizeof out);
        int null_cmd = omnipkg_uv_run_c(NULL, out, 64);
        int null_out = omnipkg_uv_run_c(cmd, NULL, 64);
        int both_null = omnipkg_uv_run_c(NULL, NULL, 100);
        int too_small = omnipkg_uv_run_c(cmd, out, 63);
        int untouched = 1;
        for (size_t i = 0; i < sizeof out; i++) {
            untouched &= out[i] == 'Z';
        }
        char detail[160];
        snprintf(detail, sizeof detail,
                 "NULL cmd %d, NULL out_json %d, both NULL %d, max_out 63 %d, buffer %s", null_cmd,
                 null_out, both_null, too_small, untouched ? "untouched" : "WRITTEN");
        report(null_cmd == -1 && null_out == -1 && both_null == -1 && too_small == -1 && untouched,
               "omnipkg_uv_run_c invalid arguments", detail);
        free(cmd);
    }

    /* 8. the two-phase install plan */
    if (argc == 7) {
        step_plans(python, index, argv[5], argv[6]);
    }

    uv_ffi_string_free(NULL); /* allowed by the contract */

    free(name);
    free(ver_a);
    free(ver_b);
    printf("%s: %d failed step(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures > 100 ? 100 : failures;
}
