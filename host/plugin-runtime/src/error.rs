//! Why a plugin could not be loaded.

use gigaspot_market::PluginFault;
use thiserror::Error;

/// A plugin refused at load time. Nothing of it is installed.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The bytes are not a valid WebAssembly component, or compilation failed.
    #[error("cannot compile the plugin: {0}")]
    Compile(String),
    /// The component imports interfaces the sandbox does not provide.
    #[error(
        "the plugin imports {}, which the sandbox refuses: plugins get no network and no \
         host interface (allowed: wasi:cli, wasi:io, wasi:clocks, wasi:random and \
         wasi:filesystem, answered without capabilities: fixed clocks and seed, no \
         environment, no files)",
        .0.join(", ")
    )]
    ForbiddenImports(Vec<String>),
    /// The component exports neither a strategy nor a validator world, or not the one asked for.
    #[error("not a {expected} plugin: {reason}")]
    WrongWorld {
        /// The world the caller asked for (`strategy` or `validator`).
        expected: &'static str,
        /// What was found instead.
        reason: String,
    },
    /// Linking or pre-instantiating the component failed.
    #[error("cannot link the plugin: {0}")]
    Link(String),
    /// The plugin refused the operator's configuration.
    #[error("the plugin refused its configuration: {0}")]
    Configure(String),
    /// The plugin faulted while reporting its metadata or being configured.
    #[error("the plugin faulted while loading: {0}")]
    Fault(#[from] PluginFault),
    /// Reading the plugin file or the artefact cache failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
