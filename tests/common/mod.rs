//! Shared test helpers: the shipped model loaded once per test binary, and paths into the checkout.
#![allow(dead_code)]

use emoarc::{Backend, DeviceChoice, Estimator, FloatType};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn shipped_dir() -> PathBuf {
    root().join("models").join(emoarc::estimator::DEFAULT_MODEL_NAME)
}

/// The f32 reference backend on the CPU, which every faster backend is checked against.
pub const REFERENCE: Backend = Backend::Candle {
    dtype: FloatType::F32,
    device: DeviceChoice::Cpu,
};

fn load(backend: Backend) -> Estimator {
    Estimator::builder()
        .model(emoarc::ModelSource::Dir(shipped_dir()))
        .backend(backend)
        .build()
        .expect("the shipped model loads")
}

/// The shipped model on the CPU's default backend (what `--device cpu` runs: int16 where the CPU has a fast
/// integer kernel, else f32), loaded once (loading verifies ~45 MB of sha256).
pub fn estimator() -> &'static Estimator {
    static E: OnceLock<Estimator> = OnceLock::new();
    E.get_or_init(|| load(Backend::from_flags(emoarc::Precision::Auto, DeviceChoice::Cpu).unwrap()))
}

/// The shipped model on emoarc's int16 backend (no int8 products), loaded once.
pub fn int16() -> &'static Estimator {
    static E: OnceLock<Estimator> = OnceLock::new();
    E.get_or_init(|| load(Backend::Int16))
}

/// The shipped model on the f32 reference backend, loaded once.
pub fn reference() -> &'static Estimator {
    static E: OnceLock<Estimator> = OnceLock::new();
    E.get_or_init(|| load(REFERENCE))
}

/// Copies a folder's files (not recursive: model folders are flat).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Runs the `emoarc` binary from the checkout's root on CPU with no standard input.
pub fn emoarc_cpu(args: &[&str]) -> std::process::Output {
    std::process::Command::new(option_env!("CARGO_BIN_EXE_emoarc").expect("the emoarc binary (feature cli)"))
        .args(args)
        .args(["--device", "cpu"])
        .current_dir(root())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Runs the `emoarc` binary in `dir` with `stdin` piped in (and `EMOARC_MODEL` unset), collecting its output.
pub fn run_emoarc(dir: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let bin = option_env!("CARGO_BIN_EXE_emoarc").expect("the emoarc binary (feature cli)");
    let mut child = std::process::Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env_remove("EMOARC_MODEL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails early (bad flags, bad input, a missing model) may exit before reading its input.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// The JSON lines a command wrote to standard output.
pub fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A command's standard error as text.
pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
