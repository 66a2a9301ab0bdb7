//! The tasks directory: every `*.toml` file is one version of one task. Several versions of a
//! task live side by side (`triage.toml`, `triage.v2.toml`, ...); a run uses the newest unless
//! it names a version. A valid task file whose data file is missing on this machine (the
//! git-ignored BBC set before it is built) does not stop the others: it is listed as
//! [`Unavailable`] with the reason, and a run of it fails with `MeshError::Unavailable`.

use crate::error::TaskError;
use crate::task::Task;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Default, Clone)]
pub struct Registry {
    /// name → version → task
    tasks: BTreeMap<String, BTreeMap<i64, Arc<Task>>>,
    /// Valid task files that cannot run here, in file order.
    unavailable: Vec<Unavailable>,
}

/// A task file that is valid but cannot run on this machine: a data file it names
/// (`examples`, `dataset`) is missing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unavailable {
    pub name: String,
    pub version: i64,
    pub file: PathBuf,
    /// Why, naming the missing file (the `TaskError::MissingData` message).
    pub reason: String,
}

impl Registry {
    /// Load every task file in `dir`. All files are checked; the errors of every bad file are
    /// returned together. A file that is valid but whose data file is missing is not an error:
    /// it is recorded in [`Registry::unavailable`].
    pub fn load_dir(dir: &Path) -> Result<Registry, Vec<TaskError>> {
        let rd = std::fs::read_dir(dir).map_err(|e| {
            vec![TaskError::Io {
                file: dir.to_owned(),
                source: e,
            }]
        })?;
        let mut files: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut reg = Registry::default();
        let mut errors = Vec::new();
        for f in files {
            match Task::load(&f).and_then(|t| reg.insert(t)) {
                Ok(()) => {}
                Err(e @ TaskError::MissingData { .. }) => {
                    let TaskError::MissingData { name, version, .. } = &e else {
                        unreachable!()
                    };
                    reg.unavailable.push(Unavailable {
                        name: name.clone(),
                        version: *version,
                        file: f.clone(),
                        reason: e.to_string(),
                    });
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(reg)
        } else {
            Err(errors)
        }
    }

    pub fn insert(&mut self, task: Task) -> Result<(), TaskError> {
        let versions = self.tasks.entry(task.spec.name.clone()).or_default();
        if let Some(prev) = versions.get(&task.spec.version) {
            return Err(TaskError::Duplicate {
                name: task.spec.name.clone(),
                version: task.spec.version,
                first: prev.file.clone(),
                second: task.file.clone(),
            });
        }
        versions.insert(task.spec.version, Arc::new(task));
        Ok(())
    }

    /// The named version, or the newest.
    pub fn get(&self, name: &str, version: Option<i64>) -> Option<Arc<Task>> {
        let versions = self.tasks.get(name)?;
        match version {
            Some(v) => versions.get(&v).cloned(),
            None => versions.values().next_back().cloned(),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.tasks.contains_key(name)
    }

    /// Newest version of every task, by name.
    pub fn latest(&self) -> impl Iterator<Item = Arc<Task>> + '_ {
        self.tasks.values().filter_map(|v| v.values().next_back().cloned())
    }

    pub fn versions(&self, name: &str) -> Vec<i64> {
        self.tasks
            .get(name)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Valid task files that cannot run here (a data file is missing), in file order.
    pub fn unavailable(&self) -> &[Unavailable] {
        &self.unavailable
    }

    /// Why `name` (that version, or its newest unavailable one) cannot run, when it is
    /// unavailable.
    pub fn why_unavailable(&self, name: &str, version: Option<i64>) -> Option<&Unavailable> {
        self.unavailable
            .iter()
            .filter(|u| u.name == name && version.is_none_or(|v| v == u.version))
            .max_by_key(|u| u.version)
    }
}
