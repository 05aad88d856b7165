//! The import audit: a plugin may import only what a std guest built for wasm32-wasip2
//! links in, and the sandbox answers those imports without giving any capability away
//! (see `guest_io`).

use wasmtime::Engine;
use wasmtime::component::Component;

/// The import prefixes a plugin may use. A Rust std guest built for wasm32-wasip2 imports
/// interfaces of `wasi:cli` and `wasi:io` (environment, exit, stdio streams, errors) even
/// when it never calls them; the sandbox answers them with an empty environment, captured
/// stdout/stderr and traps for the rest. The
/// contract's own `types` interface holds record types only, nothing callable.
pub const ALLOWED_IMPORT_PACKAGES: [&str; 3] = ["wasi:cli/", "wasi:io/", "gigaspot:plugin/types@"];

/// Names of all the component's imports, in import order.
pub(crate) fn import_names(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The imports among `imports` that the sandbox refuses.
pub(crate) fn forbidden_imports(imports: &[String]) -> Vec<String> {
    imports
        .iter()
        .filter(|name| !is_allowed(name))
        .cloned()
        .collect()
}

fn is_allowed(import: &str) -> bool {
    ALLOWED_IMPORT_PACKAGES
        .iter()
        .any(|package| import.starts_with(package))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cli_and_io_interfaces_pass() {
        assert!(is_allowed("wasi:cli/environment@0.2.6"));
        assert!(is_allowed("wasi:io/streams@0.2.6"));
        assert!(is_allowed("gigaspot:plugin/types@0.1.0"));
        for refused in [
            "wasi:filesystem/types@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:random/random@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:clix/evil",
            "host:anything/else",
        ] {
            assert!(!is_allowed(refused), "{refused} must be refused");
        }
    }
}
