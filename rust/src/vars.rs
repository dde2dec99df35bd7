//! Environment variables read on the path of every call, in place: `std::env::var_os` copies
//! each value into a new allocation (and takes a lock that only guards `std::env::set_var`,
//! which nothing this library runs calls).

use std::ffi::CStr;

/// Run `read` on the value of the variable `name`, borrowed from the environment block for the
/// moment it runs (`None` when it is not set).
pub fn with_value<R>(name: &CStr, read: impl FnOnce(Option<&[u8]>) -> R) -> R {
    // SAFETY: `getenv` returns NULL or a NUL-terminated value that stays valid until the
    // environment is changed. Like `getenv` itself, this must not race with a `setenv`.
    unsafe {
        let value = libc::getenv(name.as_ptr());
        read((!value.is_null()).then(|| CStr::from_ptr(value).to_bytes()))
    }
}

/// Whether a switch is on: the variable is set to something other than `""` and `"0"`.
pub fn switched_on(name: &CStr) -> bool {
    with_value(name, |value| {
        value.is_some_and(|v| !v.is_empty() && v != b"0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_in_place_and_switches_need_a_value_other_than_0() {
        // The test binary's own variables: `PATH` is set wherever tests run.
        let path = std::env::var_os("PATH").expect("PATH is set");
        with_value(c"PATH", |value| {
            assert_eq!(
                value,
                Some(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
            );
        });
        with_value(c"UV_FFI_SURELY_NOT_SET_ANYWHERE", |value| {
            assert_eq!(value, None)
        });
        assert!(switched_on(c"PATH"));
        assert!(!switched_on(c"UV_FFI_SURELY_NOT_SET_ANYWHERE"));
    }
}
