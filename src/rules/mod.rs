//! The rules engine: raw TOML (`raw`) → validated, compiled ruleset (`compile`) → pure
//! evaluation of a trade (`engine`). Loading reads files once; evaluating never does I/O.

pub mod backtest;
mod compile;
pub mod engine;
mod lint;
pub mod live;
mod raw;

pub use compile::{LoadError, Problem};
pub use engine::{Award, Campaign, EarnBase, EvaluateError, Program, Rounding, Ruleset};
pub use live::LiveRules;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Limits on what a rules folder may hold.
pub const FILES_MAX: usize = 1_000;
pub const FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// One rule file's name and text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// Reads every `*.toml` file in `dir` (not recursive, in name order) as one ruleset.
pub fn load_dir(dir: &Path) -> Result<Ruleset, LoadError> {
    from_sources(&read_dir(dir)?)
}

/// The rule files of `dir` (every `*.toml`, not recursive, in name order), with limits.
pub fn read_dir(dir: &Path) -> Result<Vec<Source>, LoadError> {
    let io_error = |path: &Path, source: std::io::Error| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    if paths.len() > FILES_MAX {
        return Err(LoadError::TooManyFiles {
            dir: dir.to_path_buf(),
            count: paths.len(),
        });
    }
    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes = std::fs::metadata(&path)
            .map_err(|e| io_error(&path, e))?
            .len();
        if bytes > FILE_BYTES_MAX {
            return Err(LoadError::FileTooLarge { path, bytes });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        sources.push(Source {
            name: path.display().to_string(),
            text,
        });
    }
    if sources.is_empty() {
        return Err(LoadError::NoFiles {
            dir: dir.to_path_buf(),
        });
    }
    Ok(sources)
}

/// Compiles rule file texts into a ruleset. The version is a content hash of the sources.
pub fn from_sources(sources: &[Source]) -> Result<Ruleset, LoadError> {
    let version = version_of(sources);
    compile::compile(sources, version)
}

fn version_of(sources: &[Source]) -> String {
    let mut hasher = Sha256::new();
    for source in sources {
        let name = Path::new(&source.name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((source.text.len() as u64).to_le_bytes());
        hasher.update(source.text.as_bytes());
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests;
