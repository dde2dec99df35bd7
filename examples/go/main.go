// Command uv_ffi_example drives uv-ffi's C ABI from Go through cgo.
//
// Nothing about where the header and the library are is written here: cgo takes them from the
// environment, so build with
//
//	LIB=$(python -c "from uv_ffi import _native; print(_native._library_path())")
//	CGO_CFLAGS="-I$PWD/../../rust/include" \
//	CGO_LDFLAGS="$LIB -Wl,-rpath,$(dirname "$LIB")" \
//	go build -o uv_ffi_example_go .
//
// and run
//
//	./uv_ffi_example_go /path/to/venv/bin/python http://127.0.0.1:8080/simple/ alpha==1.0 alpha==1.1
//
// (Debian's golang-go is enough: the module needs nothing but the standard library.)
//
// The two specs must be NAME==VERSION with the same PEP 503-normalised NAME. The steps are those
// of examples/c/uv_ffi_example.c, with every reply parsed by encoding/json: info; install A with
// uv_ffi_run; swap to B; uv_ffi_view_get; requests that must be refused with an error envelope;
// omnipkg_uv_run_c with a buffer too small for the reply (-2) and with invalid arguments (-1).
// Each step prints one line ("ok" or "FAIL"); the exit status is the number of failed steps.
package main

/*
#include <stdlib.h>
#include "uv_ffi.h"
*/
import "C"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"unsafe"
)

// envelope is every uv_ffi_* reply: {"ok": true, "value": ...} or {"ok": false, "error": ...}.
type envelope struct {
	Ok    *bool           `json:"ok"`
	Value json.RawMessage `json:"value"`
	Error *ffiError       `json:"error"`
}

type ffiError struct {
	Kind     string   `json:"kind"`
	Message  string   `json:"message"`
	Hints    []string `json:"hints"`
	ExitCode *int     `json:"exit_code"`
	Retry    string   `json:"retry,omitempty"`
}

type infoValue struct {
	AbiVersion *int   `json:"abi_version"`
	Version    string `json:"version"`
	UvVersion  string `json:"uv_version"`
}

type runValue struct {
	ExitCode    *int        `json:"exit_code"`
	Installed   [][2]string `json:"installed"`
	Removed     [][2]string `json:"removed"`
	Error       *string     `json:"error"`
	Environment string      `json:"environment"`
	Target      *string     `json:"target"`
	Satisfied   bool        `json:"satisfied"`
	DryRun      bool        `json:"dry_run"`
	TimingsUs   []any       `json:"timings_us"`
}

type viewValue struct {
	Environment   *string           `json:"environment"`
	Packages      [][2]string       `json:"packages"`
	Counters      map[string]uint64 `json:"counters"`
	IndexCounters map[string]uint64 `json:"index_counters"`
}

// runCReply is what omnipkg_uv_run_c writes into the caller's buffer.
type runCReply struct {
	Installed [][2]string `json:"installed"`
	Removed   [][2]string `json:"removed"`
	Error     string      `json:"error"`
	Needed    int         `json:"needed"`
}

var failures int

func report(ok bool, step string, detail string) {
	mark := "ok  "
	if !ok {
		mark = "FAIL"
		failures++
	}
	fmt.Printf("%s %s: %s\n", mark, step, detail)
}

// call passes request (nil for a NULL pointer) to fn, copies the reply and frees it.
func call(fn func(*C.char) *C.char, request *string) string {
	var creq *C.char
	if request != nil {
		creq = C.CString(*request)
		defer C.free(unsafe.Pointer(creq))
	}
	reply := fn(creq)
	if reply == nil {
		return ""
	}
	defer C.uv_ffi_string_free(reply)
	return C.GoString(reply)
}

func info(r *C.char) *C.char    { return C.uv_ffi_info(r) }
func run(r *C.char) *C.char     { return C.uv_ffi_run(r) }
func viewGet(r *C.char) *C.char { return C.uv_ffi_view_get(r) }

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// decodeEnvelope parses a reply; the error explains what was malformed.
func decodeEnvelope(text string) (envelope, error) {
	var env envelope
	if err := json.Unmarshal([]byte(text), &env); err != nil {
		return env, fmt.Errorf("not JSON: %v", err)
	}
	if env.Ok == nil {
		return env, fmt.Errorf(`no "ok" field`)
	}
	if *env.Ok && (env.Error != nil || len(env.Value) == 0) {
		return env, fmt.Errorf(`"ok": true needs a "value" and no "error"`)
	}
	if !*env.Ok && (env.Error == nil || env.Error.Kind == "" || env.Error.Message == "" ||
		env.Error.Hints == nil || env.Error.ExitCode == nil) {
		return env, fmt.Errorf(`"ok": false needs "error" with kind, message, hints and exit_code`)
	}
	return env, nil
}

// value decodes an envelope that must be "ok": true into out.
func value(text string, out any) error {
	env, err := decodeEnvelope(text)
	if err != nil {
		return err
	}
	if !*env.Ok {
		return fmt.Errorf("error reply: %s: %s", env.Error.Kind, env.Error.Message)
	}
	if err := json.Unmarshal(env.Value, out); err != nil {
		return fmt.Errorf("value does not match: %v", err)
	}
	return nil
}

// shellWord quotes s for the engine's shell-rule tokenizer.
func shellWord(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func installCommand(python, index, spec string) string {
	return "pip install --python " + shellWord(python) + " -i " + shellWord(index) + " " + shellWord(spec)
}

func splitSpec(spec string) (string, string, bool) {
	name, version, found := strings.Cut(spec, "==")
	return name, version, found && name != "" && version != ""
}

func stepInstall(step, python, index, spec string, want, wantRemoved [][2]string) {
	request := jsonText(map[string]string{"command": installCommand(python, index, spec)})
	text := call(run, &request)
	var v runValue
	if err := value(text, &v); err != nil {
		report(false, step, err.Error()+": "+text)
		return
	}
	ok := v.ExitCode != nil && *v.ExitCode == 0 && v.Error != nil && *v.Error == "" &&
		reflect.DeepEqual(v.Installed, want) && reflect.DeepEqual(v.Removed, wantRemoved) &&
		!v.Satisfied && !v.DryRun && v.Target == nil
	report(ok, step, fmt.Sprintf("installed %v removed %v in %s", v.Installed, v.Removed, v.Environment))
}

func stepRefused(step string, request *string, kind string) {
	text := call(run, request)
	env, err := decodeEnvelope(text)
	if err != nil {
		report(false, step, err.Error()+": "+text)
		return
	}
	ok := !*env.Ok && env.Error.Kind == kind && *env.Error.ExitCode != 0
	report(ok, step, text)
}

const sentinel = 16

// runC calls omnipkg_uv_run_c with a maxOut-byte buffer followed by sentinel bytes and returns the
// code, the text written (up to the first NUL, "" if none) and whether the sentinel survived.
func runC(cmd *string, maxOut int, nilBuffer bool) (int, string, bool) {
	var ccmd *C.char
	if cmd != nil {
		ccmd = C.CString(*cmd)
		defer C.free(unsafe.Pointer(ccmd))
	}
	size := maxOut + sentinel
	mem := C.malloc(C.size_t(size))
	defer C.free(mem)
	buf := unsafe.Slice((*byte)(mem), size)
	for i := range buf {
		buf[i] = 'Z'
	}
	out := (*C.char)(mem)
	if nilBuffer {
		out = nil
	}
	code := int(C.omnipkg_uv_run_c(ccmd, out, C.int(maxOut)))
	untouched := bytes.Equal(buf[maxOut:], bytes.Repeat([]byte{'Z'}, sentinel))
	text := ""
	if end := bytes.IndexByte(buf[:maxOut], 0); end >= 0 {
		text = string(buf[:end])
	}
	return code, text, untouched
}

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintf(os.Stderr, "usage: %s PYTHON INDEX_URL NAME==A NAME==B\n", os.Args[0])
		os.Exit(100)
	}
	python, index, specA, specB := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	name, verA, okA := splitSpec(specA)
	nameB, verB, okB := splitSpec(specB)
	if !okA || !okB || name != nameB {
		fmt.Fprintln(os.Stderr, "specs must be NAME==A NAME==B with the same NAME")
		os.Exit(100)
	}

	// 1. info
	{
		empty := "{}"
		text := call(info, &empty)
		var v infoValue
		if err := value(text, &v); err != nil {
			report(false, "info", err.Error()+": "+text)
		} else {
			report(v.AbiVersion != nil && v.Version != "" && v.UvVersion != "", "info", text)
		}
	}

	// 2. install A, 3. swap to B
	stepInstall("install A", python, index, specA, [][2]string{{name, verA}}, [][2]string{})
	stepInstall("swap to B", python, index, specB, [][2]string{{name, verB}}, [][2]string{{name, verA}})

	// 4. the engine's view
	{
		request := jsonText(map[string]any{"python": python, "check": true})
		text := call(viewGet, &request)
		var v viewValue
		if err := value(text, &v); err != nil {
			report(false, "view_get", err.Error()+": "+text)
		} else {
			versions := map[string]string{}
			for _, p := range v.Packages {
				versions[p[0]] = p[1]
			}
			_, hasRescans := v.Counters["rescans"]
			report(v.Environment != nil && versions[name] == verB && hasRescans, "view_get",
				fmt.Sprintf("environment %v, packages %v", derefOr(v.Environment, "null"), v.Packages))
		}
	}

	// 5. requests that must be refused
	badJSON := `{"command": `
	badCommand := `{"command": "pip frobnicate alpha"}`
	unknownField := `{"command": "pip install alpha", "colour": 1}`
	stepRefused("invalid JSON", &badJSON, "invalid_json")
	stepRefused("bad command", &badCommand, "invalid_command")
	stepRefused("unknown request field", &unknownField, "invalid_json")
	stepRefused("NULL request", nil, "invalid_json")

	// 6. a reply that does not fit in 64 bytes (uv's "No solution found ..." for a version the
	// index does not have; the environment is not changed).
	{
		cmd := installCommand(python, index, name+"==0.0.0.post999")
		code, text, untouched := runC(&cmd, 64, false)
		var r runCReply
		err := json.Unmarshal([]byte(text), &r)
		report(code == -2 && untouched && err == nil && r.Error == "buffer_too_small" && r.Needed > 64,
			"omnipkg_uv_run_c 64-byte buffer", fmt.Sprintf("returned %d, buffer %s, sentinel intact %v", code, text, untouched))
		if r.Needed > 64 && r.Needed < 1<<20 {
			code, text, untouched = runC(&cmd, r.Needed, false)
			var full runCReply
			err = json.Unmarshal([]byte(text), &full)
			report(code == 1 && untouched && err == nil && len(text)+1 == r.Needed &&
				full.Installed != nil && len(full.Installed) == 0 && full.Removed != nil && len(full.Removed) == 0 &&
				strings.Contains(full.Error, "No solution found"),
				"omnipkg_uv_run_c needed-byte buffer", fmt.Sprintf("returned %d, %s", code, text))
		} else {
			report(false, "omnipkg_uv_run_c needed-byte buffer", `no usable "needed" in the -2 reply`)
		}
	}

	// 7. invalid arguments: nothing may run (a swap back to A would show on the disk).
	{
		cmd := installCommand(python, index, specA)
		nullCmd, _, u1 := runC(nil, 64, false)
		nullOut, _, _ := runC(&cmd, 64, true)
		bothNull, _, _ := runC(nil, 100, true)
		tooSmall, written, u2 := runC(&cmd, 63, false)
		report(nullCmd == -1 && nullOut == -1 && bothNull == -1 && tooSmall == -1 && u1 && u2 && written == "",
			"omnipkg_uv_run_c invalid arguments",
			fmt.Sprintf("NULL cmd %d, NULL out_json %d, both NULL %d, max_out 63 %d", nullCmd, nullOut, bothNull, tooSmall))
	}

	C.uv_ffi_string_free(nil) // allowed by the contract

	status := "PASSED"
	if failures > 0 {
		status = "FAILED"
	}
	fmt.Printf("%s: %d failed step(s)\n", status, failures)
	if failures > 100 {
		failures = 100
	}
	os.Exit(failures)
}

func derefOr(s *string, fallback string) string {
	if s == nil {
		return fallback
	}
	return *s
}
