//! The ruleset a running server uses, swapped whole when the rules folder changes. A request
//! takes the current set once (an `Arc`) and finishes on it, whatever is swapped in meanwhile.

use super::{LoadError, Ruleset, Source};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// What the folder looked like: each rule file's name, size and modification time.
pub type FolderStamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The rules folder's stamp: cheap (metadata only), to notice a change without reading files.
pub fn folder_stamp(dir: &Path) -> FolderStamp {
    let mut stamp: FolderStamp = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    Some((e.path(), meta.len(), meta.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    stamp.sort();
    stamp
}

#[derive(Debug)]
struct State {
    rules: Arc<Ruleset>,
    loaded_at: DateTime<Utc>,
    stamp: FolderStamp,
    /// The last reload that failed, with its errors, until one succeeds.
    last_error: Option<String>,
}

/// The live ruleset of a server and where it comes from.
#[derive(Debug)]
pub struct LiveRules {
    dir: PathBuf,
    state: RwLock<State>,
}

/// How long a reload waits for trades still pricing on the old set before it frees the set.
const RELEASE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// What a reload did.
#[derive(Debug)]
pub enum Reloaded {
    /// The folder did not change (or changed back to the running version).
    Unchanged,
    /// A new version now serves.
    Swapped { version: String, campaigns: usize },
}

impl LiveRules {
    pub fn new(dir: PathBuf, rules: Ruleset, stamp: FolderStamp) -> Self {
        Self {
            dir,
            state: RwLock::new(State {
                rules: Arc::new(rules),
                loaded_at: Utc::now(),
                stamp,
                last_error: None,
            }),
        }
    }

    /// The ruleset serving now.
    pub fn current(&self) -> Arc<Ruleset> {
        self.state.read().expect("never poisoned").rules.clone()
    }

    /// (version, when it was loaded, the last failed reload's errors).
    pub fn status(&self) -> (Arc<Ruleset>, DateTime<Utc>, Option<String>) {
        let state = self.state.read().expect("never poisoned");
        (
            state.rules.clone(),
            state.loaded_at,
            state.last_error.clone(),
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder's stamp if it differs from the one the running set was loaded (or last
    /// tried) from.
    pub fn changed(&self) -> Option<FolderStamp> {
        let now = folder_stamp(&self.dir);
        (self.state.read().expect("never poisoned").stamp != now).then_some(now)
    }

    /// Compiles the folder aside and, if it compiles, swaps it in; `keep` runs first on the new
    /// set and its sources (the server stores them) and can refuse the swap. A broken folder
    /// changes nothing: the old set keeps serving and the errors are kept for `status`.
    pub fn reload<E: std::fmt::Display>(
        &self,
        keep: impl FnOnce(&Ruleset, &[Source]) -> Result<(), E>,
    ) -> Result<Reloaded, String> {
        let stamp = folder_stamp(&self.dir);
        let loaded = super::read_dir(&self.dir).and_then(|sources| {
            let rules = super::from_sources(&sources)?;
            Ok::<_, LoadError>((rules, sources))
        });
        let (rules, sources) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                let mut state = self.state.write().expect("never poisoned");
                state.stamp = stamp;
                state.last_error = Some(error.to_string());
                return Err(error.to_string());
            }
        };
        if rules.version == self.current().version {
            let mut state = self.state.write().expect("never poisoned");
            state.stamp = stamp;
            state.last_error = None;
            return Ok(Reloaded::Unchanged);
        }
        if let Err(error) = keep(&rules, &sources) {
            // Leave the stamp: the next tick tries again.
            return Err(format!("the new rules could not be stored: {error}"));
        }
        let swapped = Reloaded::Swapped {
            version: rules.version.clone(),
            campaigns: rules.campaigns.len(),
        };
        let old = std::mem::replace(
            &mut *self.state.write().expect("never poisoned"),
            State {
                rules: Arc::new(rules),
                loaded_at: Utc::now(),
                stamp,
                last_error: None,
            },
        );
        // The old set is freed here, outside the lock, and not by the last trade that still
        // held it: trades priced during the swap finish within milliseconds, so wait for them
        // (up to a second) before letting go of the set.
        let waited = std::time::Instant::now();
        while Arc::strong_count(&old.rules) > 1 && waited.elapsed() < RELEASE_WAIT_MAX {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(old);
        // A large set leaves much freed memory behind (its parse, the old set): give it back.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory of the allocator's arenas.
        unsafe {
            libc::malloc_trim(0);
        }
        Ok(swapped)
    }
}
