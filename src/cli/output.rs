//! Atomic output, shared by every command that writes results: standard output, or a temporary file beside the
//! target that replaces it only on [`AtomicOutput::commit`]. Dropped uncommitted (an error on the way), the
//! temporary file is removed and the target is left as it was. A signal (Ctrl-C, SIGTERM) ends the process
//! without running destructors, so every temporary file is also registered, and the binary's signal handler
//! ([`remove_on_signal`]) removes them before it exits.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Temporary output files not yet renamed or removed.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn forget(tmp: &Path) {
    if let Ok(mut pending) = PENDING.lock() {
        pending.retain(|p| p != tmp);
    }
}

/// Installs the handler for Ctrl-C and SIGTERM: remove the pending temporary files, then exit with 130 (the
/// shell's code for an interrupted command). Commands that run their own signal handling (the server) do not
/// call this.
pub fn remove_on_signal() -> Result<()> {
    ctrlc::set_handler(|| {
        if let Ok(pending) = PENDING.lock() {
            for tmp in pending.iter() {
                let _ = std::fs::remove_file(tmp);
            }
        }
        eprintln!("emoarc: interrupted; no output was written");
        std::process::exit(130);
    })
    .context("installing the Ctrl-C handler")
}

/// See the module docs.
pub struct AtomicOutput {
    writer: BufWriter<Box<dyn Write>>,
    /// `(temporary file, target)` when writing to a file.
    rename: Option<(PathBuf, PathBuf)>,
}

impl AtomicOutput {
    /// Standard output for `None`; else a temporary file beside `target`. A missing folder or a target that is a
    /// folder is named as such (not as the temporary file that could not be made).
    pub fn create(target: Option<&Path>) -> Result<AtomicOutput> {
        let Some(target) = target else {
            return Ok(AtomicOutput {
                writer: BufWriter::with_capacity(1 << 16, Box::new(std::io::stdout().lock())),
                rename: None,
            });
        };
        if target.is_dir() {
            bail!("output {} is a directory; name a file", target.display());
        }
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!("output directory {} does not exist", parent.display());
        }
        let tmp = emoarc::weights::temp_path_for(target);
        if let Ok(mut pending) = PENDING.lock() {
            pending.push(tmp.clone());
        }
        let file = File::create(&tmp).with_context(|| format!("cannot write into {}", parent.display()))?;
        Ok(AtomicOutput {
            writer: BufWriter::with_capacity(1 << 16, Box::new(file)),
            rename: Some((tmp, target.to_path_buf())),
        })
    }

    /// Flushes and, for a file, moves the temporary file over the target.
    pub fn commit(mut self) -> Result<()> {
        self.writer.flush().context("writing output")?;
        if let Some((tmp, target)) = self.rename.take() {
            let renamed = std::fs::rename(&tmp, &target);
            if renamed.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            forget(&tmp);
            renamed.with_context(|| format!("cannot move output into {}", target.display()))?;
        }
        Ok(())
    }
}

impl Write for AtomicOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        if let Some((tmp, _)) = self.rename.take() {
            let _ = std::fs::remove_file(&tmp);
            forget(&tmp);
        }
    }
}
