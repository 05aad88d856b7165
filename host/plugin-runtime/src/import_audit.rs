//! The import audit: a plugin may import only the interfaces of [`IMPORT_RULES`], each
//! answered without giving any capability away (`guest_io`, `ambient`); anything else —
//! `wasi:sockets`, `wasi:http`, any host interface — refuses the plugin at load.

use wasmtime::Engine;
use wasmtime::component::Component;

/// An interface a plugin may import and what the sandbox answers it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportRule {
    /// The prefix of the import names the rule covers (the interface without its
    /// version, e.g. `wasi:clocks/wall-clock@`).
    pub prefix: &'static str,
    /// What a plugin gets from it, in one line.
    pub answer: &'static str,
}

const fn rule(prefix: &'static str, answer: &'static str) -> ImportRule {
    ImportRule { prefix, answer }
}

/// Every interface a plugin may import, with the sandbox's answer. A Rust std guest links
/// in the `wasi:cli` and `wasi:io` ones even when it never calls them; guests of other
/// languages (Python through componentize-py, …) and Rust's `HashMap` also reach for the
/// clocks, randomness and the filesystem. None of them reveals anything of the host, and
/// each answers the same in every instance, so decisions replay. The contract's own
/// `types` interface holds record types only. Every function of these interfaces not
/// named here traps.
pub const IMPORT_RULES: [ImportRule; 19] = [
    rule(
        "gigaspot:plugin/types@",
        "the contract's record types (nothing callable)",
    ),
    rule(
        "wasi:cli/environment@",
        "no variables, no arguments, no working directory",
    ),
    rule("wasi:cli/exit@", "exit is a trap that says so"),
    rule("wasi:cli/stdin@", "stdin is at its end"),
    rule(
        "wasi:cli/stdout@",
        "kept per call (the last 4 KiB) to explain a fault",
    ),
    rule(
        "wasi:cli/stderr@",
        "kept per call (the last 4 KiB) to explain a fault",
    ),
    rule("wasi:cli/terminal-", "no stream is a terminal"),
    rule("wasi:io/error@", "the streams' error type (never created)"),
    rule("wasi:io/poll@", "every pollable is ready at once"),
    rule("wasi:io/streams@", "only the stdio streams above"),
    rule("wasi:clocks/wall-clock@", "fixed at 1970-01-01T00:00:00Z"),
    rule(
        "wasi:clocks/monotonic-clock@",
        "fixed at 0: no time passes, waits end at once",
    ),
    rule(
        "wasi:random/random@",
        "a fixed-seed generator: the same bytes in every instance",
    ),
    rule("wasi:random/insecure@", "the same fixed-seed generator"),
    rule("wasi:random/insecure-seed@", "a fixed seed"),
    rule("wasi:filesystem/preopens@", "no preopened directory"),
    rule(
        "wasi:filesystem/types@",
        "nothing to open: no descriptor can be had",
    ),
    rule("wasi:sockets/", "REFUSED at load: plugins get no network"),
    rule("wasi:http/", "REFUSED at load: plugins get no network"),
];

/// The rule `import` falls under, if any. Refusing rules (`wasi:sockets`, `wasi:http`) are
/// returned too; [`is_allowed`] tells them apart.
pub fn rule_for(import: &str) -> Option<&'static ImportRule> {
    IMPORT_RULES
        .iter()
        .find(|rule| import.starts_with(rule.prefix))
}

impl ImportRule {
    /// Whether the sandbox links this interface (its answer is not a refusal).
    pub fn allows(&self) -> bool {
        !self.answer.starts_with("REFUSED")
    }
}

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
    rule_for(import).is_some_and(ImportRule::allows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_interface_has_its_rule() {
        for allowed in [
            "wasi:cli/environment@0.2.6",
            "wasi:cli/terminal-stdout@0.2.9",
            "wasi:io/streams@0.2.6",
            "wasi:clocks/wall-clock@0.2.9",
            "wasi:clocks/monotonic-clock@0.2.9",
            "wasi:random/random@0.2.9",
            "wasi:random/insecure-seed@0.2.9",
            "wasi:filesystem/preopens@0.2.9",
            "wasi:filesystem/types@0.2.9",
            "gigaspot:plugin/types@0.1.0",
        ] {
            assert!(is_allowed(allowed), "{allowed} must be allowed");
        }
        for refused in [
            "wasi:sockets/tcp@0.2.6",
            "wasi:sockets/instance-network@0.2.9",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:clix/evil",
            "wasi:clocks/timezone@0.2.9",
            "wasi:random/randomx@0.2.9",
            "host:anything/else",
        ] {
            assert!(!is_allowed(refused), "{refused} must be refused");
        }
        assert!(rule_for("wasi:sockets/udp@0.2.9").is_some_and(|r| !r.allows()));
        assert_eq!(rule_for("host:anything/else"), None);
    }
}
