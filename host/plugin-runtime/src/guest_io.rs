//! The few WASI functions a Rust std guest calls on its own, answered without giving the
//! plugin any capability: an empty environment, no arguments, an empty stdin, and stdout
//! and stderr captured into a small per-call buffer (so that a panic can say why). Every
//! other import the audit admits stays a trap.
//!
//! A std guest reads `RUST_BACKTRACE` in its panic hook and may read environment variables
//! in `configure`; without these answers every panic would be reported as an undefined
//! `wasi:cli/environment` import instead of its own message.

use wasmtime::component::{
    ComponentType, Lift, Linker, LinkerInstance, Lower, Resource, ResourceType,
};
use wasmtime::{StoreContextMut, format_err};

use crate::sandbox::HostState;

/// Most bytes of guest output kept per call: the latest ones, where a panic report ends
/// up; earlier ones are counted and dropped.
pub const OUTPUT_CAP_BYTES: usize = 4096;

/// What the guest wrote to stdout and stderr during one call: the last
/// [`OUTPUT_CAP_BYTES`] bytes of it.
#[derive(Debug, Default)]
pub(crate) struct GuestOutput {
    bytes: Vec<u8>,
    dropped: u64,
}

impl GuestOutput {
    /// Forgets everything written so far (at the start of each call).
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.dropped = 0;
    }

    /// Appends `contents`, dropping the oldest bytes beyond [`OUTPUT_CAP_BYTES`].
    fn write(&mut self, contents: &[u8]) {
        let skipped = contents.len().saturating_sub(OUTPUT_CAP_BYTES);
        self.bytes.extend_from_slice(&contents[skipped..]);
        let excess = self.bytes.len().saturating_sub(OUTPUT_CAP_BYTES);
        self.bytes.drain(..excess);
        self.dropped += (skipped + excess) as u64;
    }

    /// The output as text, with a note first when earlier output was dropped.
    pub(crate) fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        if self.dropped == 0 {
            return text.into_owned();
        }
        format!(
            "[{} earlier bytes dropped: the last {OUTPUT_CAP_BYTES} bytes of each call are kept]\n{text}",
            self.dropped
        )
    }

    /// The Rust panic message in the output (`panicked at <where>: <message>`), if the
    /// guest panicked.
    pub(crate) fn panic_message(&self) -> Option<String> {
        panic_message(&String::from_utf8_lossy(&self.bytes))
    }
}

/// Finds a Rust panic report in `output`: `thread '…' panicked at <where>:\n<message>`
/// followed by an optional `note: run with RUST_BACKTRACE=1 …` line.
fn panic_message(output: &str) -> Option<String> {
    let start = output.find("panicked at ")? + "panicked at ".len();
    let rest = &output[start..];
    let (location, message) = match rest.split_once(":\n") {
        Some((location, message)) => (location, message),
        // An older std writes `panicked at '<message>', <where>` on one line.
        None => (rest.lines().next().unwrap_or(rest), ""),
    };
    let message: Vec<&str> = message
        .lines()
        .take_while(|line| !line.starts_with("note: "))
        .collect();
    let message = message.join("\n");
    let message = message.trim();
    Some(if message.is_empty() {
        format!("panicked at {}", location.trim())
    } else {
        format!("panicked at {}: {message}", location.trim())
    })
}

/// `wasi:io/streams.output-stream`: rep 1 is stdout, 2 is stderr.
pub(crate) struct OutputStream;
/// `wasi:io/streams.input-stream`: stdin, always at its end.
pub(crate) struct InputStream;
/// `wasi:io/poll.pollable`: always ready.
pub(crate) struct Pollable;
/// `wasi:io/error.error`: never created.
pub(crate) struct IoError;
/// `wasi:cli/terminal-*`: never created (no stream is a terminal).
struct Terminal;

/// `wasi:io/streams.stream-error`.
#[derive(ComponentType, Lift, Lower)]
#[component(variant)]
enum StreamError {
    #[component(name = "last-operation-failed")]
    LastOperationFailed(Resource<IoError>),
    #[component(name = "closed")]
    Closed,
}

type StreamResult<T> = Result<T, StreamError>;

/// What `check-write` allows per write; writes past the cap still succeed (and are
/// dropped), so a chatty guest never waits for room.
const WRITE_BUDGET: u64 = 4096;

/// Defines the answers in `linker` under the exact names the component imports, for every
/// `0.2.x` version of the interfaces.
pub(crate) fn define(linker: &mut Linker<HostState>, imports: &[String]) -> wasmtime::Result<()> {
    for name in imports {
        let Some((interface, version)) = name.split_once('@') else {
            continue;
        };
        if !version.starts_with("0.2.") {
            continue;
        }
        let mut instance = linker.instance(name)?;
        match interface {
            "wasi:io/error" => resource::<IoError>(&mut instance, "error")?,
            "wasi:io/poll" => {
                resource::<Pollable>(&mut instance, "pollable")?;
                instance.func_wrap(
                    "[method]pollable.block",
                    |_, (_,): (Resource<Pollable>,)| Ok(()),
                )?;
                instance.func_wrap(
                    "[method]pollable.ready",
                    |_, (_,): (Resource<Pollable>,)| Ok((true,)),
                )?;
                // Every pollable is ready: all of them, in order.
                instance.func_wrap("poll", |_, (all,): (Vec<Resource<Pollable>>,)| {
                    let ready = (0..all.len()).map(|i| i as u32).collect::<Vec<u32>>();
                    Ok((ready,))
                })?;
            }
            "wasi:io/streams" => streams(&mut instance)?,
            "wasi:cli/environment" => {
                instance.func_wrap("get-environment", |_, ()| {
                    Ok((Vec::<(String, String)>::new(),))
                })?;
                instance.func_wrap("get-arguments", |_, ()| Ok((Vec::<String>::new(),)))?;
                instance.func_wrap("initial-cwd", |_, ()| Ok((None::<String>,)))?;
            }
            "wasi:cli/exit" => {
                instance.func_wrap(
                    "exit",
                    |_, (status,): (Result<(), ()>,)| -> wasmtime::Result<()> {
                        let status = if status.is_ok() { "success" } else { "failure" };
                        Err(format_err!("the plugin called exit ({status})"))
                    },
                )?;
            }
            "wasi:cli/stdin" => {
                resource::<InputStream>(&mut instance, "input-stream")?;
                instance.func_wrap("get-stdin", |_, ()| {
                    Ok((Resource::<InputStream>::new_own(0),))
                })?;
            }
            "wasi:cli/stdout" => {
                resource::<OutputStream>(&mut instance, "output-stream")?;
                instance.func_wrap("get-stdout", |_, ()| {
                    Ok((Resource::<OutputStream>::new_own(1),))
                })?;
            }
            "wasi:cli/stderr" => {
                resource::<OutputStream>(&mut instance, "output-stream")?;
                instance.func_wrap("get-stderr", |_, ()| {
                    Ok((Resource::<OutputStream>::new_own(2),))
                })?;
            }
            "wasi:cli/terminal-input" => resource::<Terminal>(&mut instance, "terminal-input")?,
            "wasi:cli/terminal-output" => resource::<Terminal>(&mut instance, "terminal-output")?,
            "wasi:cli/terminal-stdin" => {
                resource::<Terminal>(&mut instance, "terminal-input")?;
                instance.func_wrap("get-terminal-stdin", |_, ()| {
                    Ok((None::<Resource<Terminal>>,))
                })?;
            }
            "wasi:cli/terminal-stdout" | "wasi:cli/terminal-stderr" => {
                resource::<Terminal>(&mut instance, "terminal-output")?;
                let getter = if interface.ends_with("stdout") {
                    "get-terminal-stdout"
                } else {
                    "get-terminal-stderr"
                };
                instance.func_wrap(getter, |_, ()| Ok((None::<Resource<Terminal>>,)))?;
            }
            _ => crate::ambient::define(&mut instance, interface)?,
        }
    }
    Ok(())
}

/// Defines resource `name` in `instance` as the host type `T`: the same `T` wherever an
/// interface re-exports it, so that the guest's aliases of one resource type check.
pub(crate) fn resource<T: 'static>(
    instance: &mut LinkerInstance<'_, HostState>,
    name: &str,
) -> wasmtime::Result<()> {
    instance.resource(name, ResourceType::host::<T>(), |_, _| Ok(()))
}

/// `wasi:io/streams`: writes to stdout and stderr land in the call's [`GuestOutput`];
/// stdin is closed.
fn streams(instance: &mut LinkerInstance<'_, HostState>) -> wasmtime::Result<()> {
    resource::<IoError>(instance, "error")?;
    resource::<Pollable>(instance, "pollable")?;
    resource::<InputStream>(instance, "input-stream")?;
    resource::<OutputStream>(instance, "output-stream")?;
    type Out = Resource<OutputStream>;
    fn write(mut store: StoreContextMut<'_, HostState>, contents: &[u8]) -> StreamResult<()> {
        store.data_mut().output.write(contents);
        Ok(())
    }
    instance.func_wrap("[method]output-stream.check-write", |_, (_,): (Out,)| {
        Ok((StreamResult::Ok(WRITE_BUDGET),))
    })?;
    instance.func_wrap(
        "[method]output-stream.write",
        |store, (_, contents): (Out, Vec<u8>)| Ok((write(store, &contents),)),
    )?;
    instance.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |store, (_, contents): (Out, Vec<u8>)| Ok((write(store, &contents),)),
    )?;
    for flush in [
        "[method]output-stream.flush",
        "[method]output-stream.blocking-flush",
    ] {
        instance.func_wrap(flush, |_, (_,): (Out,)| Ok((StreamResult::Ok(()),)))?;
    }
    instance.func_wrap("[method]output-stream.subscribe", |_, (_,): (Out,)| {
        Ok((Resource::<Pollable>::new_own(0),))
    })?;
    type In = Resource<InputStream>;
    for read in [
        "[method]input-stream.read",
        "[method]input-stream.blocking-read",
    ] {
        instance.func_wrap(read, |_, (_, _len): (In, u64)| {
            Ok((StreamResult::<Vec<u8>>::Err(StreamError::Closed),))
        })?;
    }
    instance.func_wrap("[method]input-stream.subscribe", |_, (_,): (In,)| {
        Ok((Resource::<Pollable>::new_own(0),))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_report_becomes_one_message() {
        let report = "thread '<unnamed>' panicked at src/lib.rs:95:27:\ndeliberate panic\n\
                      note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(report).as_deref(),
            Some("panicked at src/lib.rs:95:27: deliberate panic")
        );
        let multi = "debug line\nthread 'main' panicked at a.rs:1:2:\nfirst\nsecond\n";
        assert_eq!(
            panic_message(multi).as_deref(),
            Some("panicked at a.rs:1:2: first\nsecond")
        );
        assert_eq!(panic_message("just some logging\n"), None);
    }

    #[test]
    fn output_is_capped_and_says_so() {
        let mut out = GuestOutput::default();
        out.write(&[b'a'; OUTPUT_CAP_BYTES - 1]);
        out.write(b"bcd");
        let text = out.text();
        assert!(text.starts_with("[2 earlier bytes dropped"), "{text}");
        assert!(text.ends_with(&format!("{}bcd", "a".repeat(OUTPUT_CAP_BYTES - 3))));
        out.write(&[b'z'; 3 * OUTPUT_CAP_BYTES]);
        assert!(out.text().ends_with(&"z".repeat(OUTPUT_CAP_BYTES)));
        assert!(
            out.text()
                .starts_with(&format!("[{} earlier", 3 * OUTPUT_CAP_BYTES + 2))
        );
        out.clear();
        assert_eq!(out.text(), "");
    }
}
