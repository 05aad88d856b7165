//! `gigaspot plugin new`: writes a plugin project that builds, tests and passes
//! `gigaspot plugin check` as it is — Rust (a Cargo project on gigaspot-sdk) or Python
//! (componentize-py, like `examples/python-strategy`), a strategy or a validator. The
//! templates live in `host/server/templates/plugin-new/`; the Python projects share the
//! example's build and test scripts and its decoder of the contract's buffers.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The language of the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Cargo project depending on gigaspot-sdk, built for wasm32-wasip2.
    Rust,
    /// A Python module built with componentize-py (pinned, in a venv the build makes).
    Python,
}

/// The arguments of `gigaspot plugin new`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["strategy", "validator"])))]
pub struct NewArgs {
    /// The plugin's name, kebab-case (e.g. `my-strategy`): its folder, package and
    /// `info().name`.
    pub name: String,
    /// Write a ranking strategy.
    #[arg(
        long,
        conflicts_with = "validator",
        required_unless_present = "validator"
    )]
    pub strategy: bool,
    /// Write a bid validator.
    #[arg(long)]
    pub validator: bool,
    /// The language.
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,
    /// The folder the project's folder is made in.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Rust: gigaspot-sdk as a path dependency on this folder (a checkout's `sdk/`).
    /// Default: the `sdk/` of the checkout this binary was built from, if it is still
    /// there.
    #[arg(long, conflicts_with = "sdk_git")]
    pub sdk_path: Option<PathBuf>,
    /// Rust: gigaspot-sdk as a git dependency on this repository URL.
    #[arg(long)]
    pub sdk_git: Option<String>,
    /// Rust: the commit, tag or branch of `--sdk-git` (a `rev`).
    #[arg(long, requires = "sdk_git")]
    pub sdk_rev: Option<String>,
}

const TEMPLATES_RUST_CARGO: &str = include_str!("../templates/plugin-new/rust-Cargo.toml");
const TEMPLATE_RUST_STRATEGY: &str = include_str!("../templates/plugin-new/rust-strategy.rs");
const TEMPLATE_RUST_VALIDATOR: &str = include_str!("../templates/plugin-new/rust-validator.rs");
const TEMPLATE_PY_STRATEGY: &str = include_str!("../templates/plugin-new/python-strategy-app.py");
const TEMPLATE_PY_STRATEGY_TEST: &str =
    include_str!("../templates/plugin-new/python-strategy-test.py");
const TEMPLATE_PY_VALIDATOR: &str = include_str!("../templates/plugin-new/python-validator-app.py");
const TEMPLATE_PY_VALIDATOR_TEST: &str =
    include_str!("../templates/plugin-new/python-validator-test.py");
const TEMPLATE_README: &str = include_str!("../templates/plugin-new/README.md");
const TEMPLATE_GITIGNORE: &str = include_str!("../templates/plugin-new/gitignore");
const PY_BUILD: &str = include_str!("../../../examples/python-strategy/build.sh");
const PY_TEST: &str = include_str!("../../../examples/python-strategy/test.sh");
const PY_REQUIREMENTS: &str = include_str!("../../../examples/python-strategy/requirements.txt");
const PY_BOOK: &str = include_str!("../../../examples/python-strategy/gigaspot_book.py");
const CONTRACT: &str = include_str!("../../../wit/since_v0.3.0/plugin.wit");

/// A file of the project: its path in the project's folder, its text, and whether it is
/// a script to run.
struct File {
    path: &'static str,
    text: String,
    executable: bool,
}

fn file(path: &'static str, text: String) -> File {
    File {
        path,
        text,
        executable: false,
    }
}

/// Writes the project `args` describe and prints the next steps.
pub fn run(args: NewArgs) -> Result<()> {
    check_name(&args.name)?;
    let kind = if args.validator {
        "validator"
    } else {
        "strategy"
    };
    let root = args.dir.join(&args.name);
    if root.exists()
        && std::fs::read_dir(&root)
            .with_context(|| format!("cannot read {}", root.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", root.display());
    }
    let (files, steps) = match args.lang {
        Lang::Rust => rust(&args, kind)?,
        Lang::Python => python(&args.name, kind),
    };
    for f in &files {
        let path = root.join(f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &f.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if f.executable {
            make_executable(&path)?;
        }
    }
    println!(
        "wrote {} ({} {kind}, {} files)",
        root.display(),
        match args.lang {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
        },
        files.len()
    );
    println!("next, in {}:\n{steps}", root.display());
    Ok(())
}

/// The Rust project and its next steps.
fn rust(args: &NewArgs, kind: &str) -> Result<(Vec<File>, String)> {
    let sdk = sdk_dependency(args)?;
    let crate_file = args.name.replace('-', "_");
    let steps = format!(
        "  rustup target add wasm32-wasip2\n  cargo test\n  \
         cargo build --release --target wasm32-wasip2\n  \
         gigaspot plugin check target/wasm32-wasip2/release/{crate_file}.wasm"
    );
    let fill = |t: &str| {
        t.replace("{{name}}", &args.name)
            .replace("{{kind}}", kind)
            .replace("{{sdk}}", &sdk)
            .replace("{{lang}}", "Rust")
            .replace("{{steps}}", &format!("```sh\n{}\n```", unindent(&steps)))
    };
    let lib = if kind == "validator" {
        TEMPLATE_RUST_VALIDATOR
    } else {
        TEMPLATE_RUST_STRATEGY
    };
    let files = vec![
        file("Cargo.toml", fill(TEMPLATES_RUST_CARGO)),
        file("src/lib.rs", fill(lib)),
        file("README.md", fill(TEMPLATE_README)),
        file(".gitignore", TEMPLATE_GITIGNORE.to_owned()),
    ];
    Ok((files, steps))
}

/// The Python project and its next steps.
fn python(name: &str, kind: &str) -> (Vec<File>, String) {
    let steps = format!(
        "  ./test.sh    # builds target/{name}.wasm (componentize-py in target/venv), then \
         runs test_app.py\n  gigaspot plugin check target/{name}.wasm"
    );
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{kind}}", kind)
            .replace("{{lang}}", "Python")
            .replace("{{steps}}", &format!("```sh\n{}\n```", unindent(&steps)))
    };
    let (app, test) = if kind == "validator" {
        (TEMPLATE_PY_VALIDATOR, TEMPLATE_PY_VALIDATOR_TEST)
    } else {
        (TEMPLATE_PY_STRATEGY, TEMPLATE_PY_STRATEGY_TEST)
    };
    let script = |path, text: &str| File {
        path,
        text: text.to_owned(),
        executable: true,
    };
    let files = vec![
        file("app.py", fill(app)),
        file("test_app.py", fill(test)),
        file("gigaspot_book.py", PY_BOOK.to_owned()),
        file(
            "plugin.env",
            format!(
                "# What build.sh builds: the component's name (its file is target/$NAME.wasm) \
                 and the\n# contract world it implements (strategy or validator).\n\
                 NAME={name}\nWORLD={kind}\n"
            ),
        ),
        file("requirements.txt", PY_REQUIREMENTS.to_owned()),
        script("build.sh", PY_BUILD),
        script("test.sh", PY_TEST),
        file("wit/plugin.wit", CONTRACT.to_owned()),
        file("README.md", fill(TEMPLATE_README)),
        file(".gitignore", TEMPLATE_GITIGNORE.to_owned()),
    ];
    (files, steps)
}

/// The `gigaspot-sdk = …` line of the Cargo manifest.
fn sdk_dependency(args: &NewArgs) -> Result<String> {
    if let Some(url) = &args.sdk_git {
        let rev = args
            .sdk_rev
            .as_ref()
            .map_or(String::new(), |rev| format!(", rev = {}", toml_string(rev)));
        return Ok(format!(
            "gigaspot-sdk = {{ git = {}{rev} }}",
            toml_string(url)
        ));
    }
    let path = match &args.sdk_path {
        Some(path) => path.clone(),
        None => {
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk");
            if !built_from.join("Cargo.toml").is_file() {
                bail!(
                    "say where gigaspot-sdk is: --sdk-path /path/to/gigaspot/sdk (a checkout's \
                     sdk/ folder) or --sdk-git <repository URL> [--sdk-rev <commit>]"
                );
            }
            built_from
        }
    };
    let path = path
        .canonicalize()
        .with_context(|| format!("--sdk-path {}", path.display()))?;
    if !path.join("Cargo.toml").is_file() || !path.join("wit").is_dir() {
        bail!(
            "{} is not gigaspot-sdk (no Cargo.toml and wit/ in it)",
            path.display()
        );
    }
    Ok(format!(
        "gigaspot-sdk = {{ path = {} }}",
        toml_string(&path.to_string_lossy())
    ))
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A kebab-case name: a lowercase letter, then lowercase letters, digits and single
/// hyphens, at most 64 characters (the plugin contract's rule for names).
fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "{name:?} is not a plugin name: kebab-case, e.g. my-strategy (at most 64 characters)"
        );
    }
    Ok(())
}

fn unindent(steps: &str) -> String {
    steps
        .lines()
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kebab_case() {
        for good in ["a", "my-strategy", "v2-cap"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "My",
            "2fast",
            "a--b",
            "a-",
            "a_b",
            "a b",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dependencies_are_valid_toml_strings() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
    }
}
