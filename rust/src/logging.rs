//! The engine prints nothing unless asked: `-v` on a command, or `UV_FFI_LOG=1` for everything.

pub fn enabled() -> bool {
    crate::vars::switched_on(c"UV_FFI_LOG")
}

/// Print the changelog the way uv's CLI does (` - name==old`, ` + name==new`) to stderr.
pub fn print_changes(installed: &[(String, String)], removed: &[(String, String)]) {
    #[allow(clippy::print_stderr)]
    {
        for (name, version) in removed {
            eprintln!(" - {name}=={version}");
        }
        for (name, version) in installed {
            eprintln!(" + {name}=={version}");
        }
    }
}
