//! `cargo xtask <task>`: the project's developer tasks, std only.
//!
//! - `setup`: the wasm32-wasip2 target and a Python virtual environment
//!   (`.venv`) with `tableauhyperapi` (which ships `hyperd`) and
//!   `tableauserverclient` (the official client the Tableau sandbox is
//!   tested with).
//! - `build-plugins`: builds every guest under `plugins/` for wasm32-wasip2
//!   in the shared target directory and stages the components in
//!   `target/plugins/<name>.wasm`.
//! - `test`: setup, build-plugins, then `cargo test --workspace` (the
//!   README's test command, and CI's).
//! - `demo`: setup, build-plugins, then `ml-connector demo`: the product
//!   live on the sandboxes until Ctrl-C (`--once`: the one-shot check).
//! - `bench`: setup, build-plugins, then the benchmarks (release build).
//! - `dist-docs`: shell completions and man pages of `ml-connector`, from
//!   its clap definitions, into `target/dist-docs/{completions,man}`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Guest crates built as components: (package, staged file name).
const PLUGINS: &[(&str, &str)] = &[
    ("mlc-plugin-scripted", "scripted"),
    ("mlc-plugin-gl-journal-lines", "gl-journal-lines"),
    ("mlc-plugin-misbehave", "misbehave"),
    ("mlc-plugin-misbehave-import", "misbehave-import"),
];

/// Python packages the tests and the demo need.
const PYTHON_PACKAGES: &[&str] = &["tableauhyperapi", "tableauserverclient"];

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = args.get(1..).unwrap_or(&[]);
    let result = match task {
        "setup" => setup().and_then(|()| browser()),
        "build-plugins" => build_plugins(),
        "test" => setup()
            .and_then(|()| browser())
            .and_then(|()| build_plugins())
            .and_then(|()| test(rest)),
        "demo" => setup()
            .and_then(|()| build_plugins())
            .and_then(|()| demo(rest)),
        "bench" => setup()
            .and_then(|()| build_plugins())
            .and_then(|()| bench(rest)),
        "dist-docs" => dist_docs(),
        _ => {
            eprintln!("usage: cargo xtask <setup|build-plugins|test|demo|bench|dist-docs> [args]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {task}: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn run(cmd: &mut Command) -> Result {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn venv_python() -> PathBuf {
    root().join(".venv/bin/python")
}

fn setup() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup not found: {e}"))?;
    if !String::from_utf8_lossy(&installed.stdout).contains("wasm32-wasip2") {
        run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    }
    let python = venv_python();
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv", ".venv"]))?;
    }
    let missing: Vec<&str> = PYTHON_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new(&python)
                .args(["-c", &format!("import {p}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .collect();
    if !missing.is_empty() {
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "pip", "install", "--quiet"]).args(&missing);
        run(&mut cmd)?;
    }
    Ok(())
}

/// Debian's Chromium and chromedriver, for the status-page test: installed
/// with apt-get when missing and running as root; otherwise the command
/// that installs them.
fn browser() -> Result {
    let present = |p: &str| Path::new(p).exists();
    if present("/usr/bin/chromium") && present("/usr/bin/chromedriver") {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return Err(
            "the status-page test needs Chromium: run `sudo apt-get install chromium chromium-driver`"
                .into(),
        );
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "chromium", "chromium-driver"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Whether rustup has the wasm32-wasip2 target (true when rustup is not
/// there to ask: a toolchain installed otherwise may still have it).
fn wasm_target_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            !o.status.success() || String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2")
        })
        .unwrap_or(true)
}

fn build_plugins() -> Result {
    if !wasm_target_installed() {
        return Err(
            "the wasm32-wasip2 target is not installed: run `rustup target add wasm32-wasip2` \
             (or `cargo xtask setup`), then `cargo xtask build-plugins` again"
                .into(),
        );
    }
    let mut cmd = cargo();
    cmd.args(["build", "--target", "wasm32-wasip2", "--profile", "plugin"]);
    for (package, _) in PLUGINS {
        cmd.args(["-p", package]);
    }
    run(&mut cmd)?;
    let built = target_dir().join("wasm32-wasip2/plugin");
    let staged = target_dir().join("plugins");
    fs::create_dir_all(&staged).map_err(|e| format!("{}: {e}", staged.display()))?;
    for (package, name) in PLUGINS {
        let from = built.join(format!("{}.wasm", package.replace('-', "_")));
        let to = staged.join(format!("{name}.wasm"));
        fs::copy(&from, &to)
            .map_err(|e| format!("staging {} -> {}: {e}", from.display(), to.display()))?;
    }
    eprintln!("plugins staged in {}", staged.display());
    Ok(())
}

fn with_python(cmd: &mut Command) -> &mut Command {
    cmd.env("ML_CONNECTOR_PYTHON", venv_python())
        .env("ML_CONNECTOR_PLUGINS_BUILT", target_dir().join("plugins"))
}

fn test(rest: &[String]) -> Result {
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]).args(rest);
    run(with_python(&mut cmd))
}

fn demo(rest: &[String]) -> Result {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--bin", "ml-connector", "--", "demo"])
        .args(rest);
    run(with_python(&mut cmd))
}

fn bench(rest: &[String]) -> Result {
    let mut cmd = cargo();
    cmd.args(["bench"]).args(rest);
    run(with_python(&mut cmd))
}

/// Shells `ml-connector completions` is written for, and their file names.
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "ml-connector.bash"),
    ("zsh", "_ml-connector"),
    ("fish", "ml-connector.fish"),
    ("elvish", "ml-connector.elv"),
    ("powershell", "_ml-connector.ps1"),
];

fn dist_docs() -> Result {
    run(cargo().args(["build", "--quiet", "--bin", "ml-connector"]))?;
    let binary = target_dir().join("debug/ml-connector");
    let out = target_dir().join("dist-docs");
    let completions = out.join("completions");
    fs::create_dir_all(&completions).map_err(|e| format!("{}: {e}", completions.display()))?;
    for (shell, file) in COMPLETIONS {
        let script = Command::new(&binary)
            .args(["completions", shell])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        if !script.status.success() {
            return Err(format!(
                "ml-connector completions {shell} failed: {}",
                String::from_utf8_lossy(&script.stderr)
            ));
        }
        let path = completions.join(file);
        fs::write(&path, script.stdout).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let man = out.join("man");
    run(Command::new(&binary).args(["man", "--out"]).arg(&man))?;
    eprintln!(
        "completions in {}, man pages in {}",
        completions.display(),
        man.display()
    );
    Ok(())
}
