//! Model sources (a folder, or `hf:ORG/REPO[@REVISION]`) and their resolution to a verified folder on disk:
//! the manifest beside the folder or the built-in one, the hub through hf-hub's cache and (feature `hub`) its
//! download API.

use super::{verify_dir, Manifest, ModelEntry, VerifiedModel};
use crate::error::{Error, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelSource {
    /// A folder on disk holding the model's files.
    Dir(PathBuf),
    /// A Hugging Face hub repository at a revision (branch, tag or commit; `main` when none is given).
    Hub {
        /// The repository as `ORG/REPO`.
        repo: String,
        /// The branch, tag or commit to fetch; `main` when the source names none.
        revision: String,
    },
}

impl FromStr for ModelSource {
    type Err = Error;

    /// Parses `DIR` or `hf:ORG/REPO[@REVISION]`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadSource {
            source_spec: s.to_string(),
            reason: reason.to_string(),
        };
        let Some(rest) = s.strip_prefix("hf:") else {
            if s.trim().is_empty() {
                return Err(bad("empty"));
            }
            return Ok(ModelSource::Dir(PathBuf::from(s)));
        };
        let (repo, revision) = match rest.split_once('@') {
            Some((repo, rev)) if !rev.is_empty() => (repo, rev),
            Some(_) => return Err(bad("empty revision after '@'")),
            None => (rest, "main"),
        };
        let valid_part = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match repo.split_once('/') {
            Some((org, name)) if valid_part(org) && valid_part(name) => Ok(ModelSource::Hub {
                repo: repo.to_string(),
                revision: revision.to_string(),
            }),
            _ => Err(bad("expected hf:ORG/REPO[@REVISION]")),
        }
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::Dir(p) => write!(f, "{}", p.display()),
            ModelSource::Hub { repo, revision } => write!(f, "hf:{repo}@{revision}"),
        }
    }
}

/// How to find and verify a model: the source, and optionally an explicit manifest and model name.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// The folder or hub repository to load from.
    pub source: ModelSource,
    /// A manifest file to use instead of the one found beside the model (or the built-in one).
    pub manifest: Option<PathBuf>,
    /// The manifest entry to check against, instead of the one the source implies.
    pub name: Option<String>,
    /// The hub cache folder; `None` uses hf-hub's default (`HF_HOME`, or `~/.cache/huggingface/hub`).
    pub hub_cache: Option<PathBuf>,
    /// Whether a file missing from the hub cache may be downloaded (off when `HF_HUB_OFFLINE` is set).
    pub allow_download: bool,
}

impl Resolver {
    /// A resolver for `source` with defaults: the manifest beside the model (or the built-in one), the entry
    /// the source implies, hf-hub's default cache, and downloads allowed unless `HF_HUB_OFFLINE` is set to
    /// something other than empty or `0`.
    pub fn new(source: ModelSource) -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
        Resolver {
            source,
            manifest: None,
            name: None,
            hub_cache: None,
            allow_download: !offline,
        }
    }

    /// Finds the model's files and verifies each against the manifest.
    pub fn resolve(&self) -> Result<VerifiedModel> {
        match &self.source {
            ModelSource::Dir(dir) => {
                if !dir.is_dir() {
                    return Err(Error::MissingFile { path: dir.clone() });
                }
                let manifest = match &self.manifest {
                    Some(p) => Manifest::load(p)?,
                    None => Manifest::for_model_dir(dir)?,
                };
                let name = match &self.name {
                    Some(n) => n.clone(),
                    None => dir_name(dir),
                };
                let entry = manifest.model(&name).ok_or_else(|| Error::UnlistedModel {
                    model: name.clone(),
                    manifest: manifest.origin.clone(),
                })?;
                verify_dir(dir, entry)
            }
            ModelSource::Hub { repo, revision } => {
                let manifest = match &self.manifest {
                    Some(p) => Manifest::load(p)?,
                    None => Manifest::builtin(),
                };
                let entry = match &self.name {
                    Some(n) => manifest.model(n),
                    None => manifest.model_for_hub(repo),
                }
                .ok_or_else(|| Error::UnlistedModel {
                    model: format!("hf:{repo}"),
                    manifest: manifest.origin.clone(),
                })?;
                let dir = self.fetch_from_hub(repo, revision, entry)?;
                verify_dir(&dir, entry)
            }
        }
    }

    /// Without the `hub` feature a hub source is a clear error, not a missing file.
    #[cfg(not(feature = "hub"))]
    fn fetch_from_hub(&self, repo: &str, revision: &str, _entry: &ModelEntry) -> Result<PathBuf> {
        Err(Error::Hub(format!(
            "hf:{repo}@{revision}: this build of emoarc has no hub support (cargo feature `hub`); pass a model folder"
        )))
    }

    /// Makes every file of `entry` present in one hub-cache snapshot folder and returns that folder: from the
    /// cache when it has them (no network at all), otherwise through hf-hub's download API.
    #[cfg(feature = "hub")]
    fn fetch_from_hub(&self, repo: &str, revision: &str, entry: &ModelEntry) -> Result<PathBuf> {
        use hf_hub::{Cache, Repo, RepoType};
        let cache = match &self.hub_cache {
            Some(p) => Cache::new(p.clone()),
            None => Cache::from_env(),
        };
        let hub_repo = Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string());
        let cached = cache.repo(hub_repo.clone());
        let mut api_repo = None;
        let mut snapshot: Option<PathBuf> = None;
        for f in &entry.files {
            let path = match cached.get(&f.path) {
                Some(p) => p,
                None if !self.allow_download => {
                    return Err(Error::Hub(format!(
                        "{} is not in the hub cache at {} for hf:{repo}@{revision}, and downloads are off (HF_HUB_OFFLINE)",
                        f.path,
                        cache.path().display()
                    )))
                }
                None => {
                    if api_repo.is_none() {
                        let api = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
                            .with_progress(false)
                            .build()
                            .map_err(|e| Error::Hub(e.to_string()))?;
                        api_repo = Some(api.repo(hub_repo.clone()));
                    }
                    let api_repo = api_repo.as_ref().expect("set just above");
                    api_repo
                        .get(&f.path)
                        .map_err(|e| Error::Hub(format!("hf:{repo}@{revision}/{}: {e}", f.path)))?
                }
            };
            // All files of one revision share a snapshot folder; the file path may contain sub-folders.
            let depth = Path::new(&f.path).components().count();
            let dir = path
                .ancestors()
                .nth(depth)
                .map(Path::to_path_buf)
                .ok_or_else(|| Error::Hub(format!("odd cache path {}", path.display())))?;
            match &snapshot {
                Some(s) if *s != dir => {
                    return Err(Error::Hub(format!(
                        "files of hf:{repo}@{revision} are spread over two snapshots ({} and {}); the revision moved while fetching",
                        s.display(),
                        dir.display()
                    )))
                }
                _ => snapshot = Some(dir),
            }
        }
        snapshot.ok_or_else(|| Error::ModelFormat {
            model: entry.name.clone(),
            reason: "the manifest lists no files".into(),
        })
    }
}

fn dir_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
