//! Configuration storage backends: where settings and accounts are kept.
//!
//! A backend stores one JSON document (an object). `FileStorage` keeps it in
//! `<dir>/config.json`, written atomically (temporary file, fsync, rename, fsync
//! of the directory) so a crash leaves either the old or the new document. A
//! file that cannot be parsed is reported with its path and never overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::error::{Result, StorageError};

/// A storage backend for the configuration document.
pub trait Storage: Send + Sync + 'static {
    /// Load the document. A missing document is an empty one.
    fn load(&self) -> Result<Map<String, Value>, StorageError>;
    /// Replace the document.
    fn save(&self, doc: &Map<String, Value>) -> Result<(), StorageError>;
    /// For messages: where the data lives.
    fn describe(&self) -> String;
}

/// Keeps the document in memory only (tests, ephemeral apps).
#[derive(Default)]
pub struct MemoryStorage {
    doc: Mutex<Map<String, Value>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Storage for MemoryStorage {
    fn load(&self) -> Result<Map<String, Value>, StorageError> {
        Ok(self.doc.lock().clone())
    }
    fn save(&self, doc: &Map<String, Value>) -> Result<(), StorageError> {
        *self.doc.lock() = doc.clone();
        Ok(())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

/// Keeps the document as JSON in `<dir>/config.json`.
pub struct FileStorage {
    dir: PathBuf,
    /// Set when a load found the file corrupt: saving would destroy the
    /// user's data, so it is refused until the file is fixed or removed.
    corrupt: Mutex<bool>,
}

impl FileStorage {
    pub const FILE_NAME: &'static str = "config.json";

    /// A storage in `dir`; the directory is created on the first save.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStorage {
            dir: dir.into(),
            corrupt: Mutex::new(false),
        }
    }

    pub fn directory(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(Self::FILE_NAME)
    }
}

impl Storage for FileStorage {
    fn load(&self) -> Result<Map<String, Value>, StorageError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == IoKind::NotFound => {
                *self.corrupt.lock() = false;
                return Ok(Map::new());
            }
            Err(source) => return Err(StorageError::Read { path, source }),
        };
        let parsed: Result<Value, String> =
            serde_json::from_slice(&bytes).map_err(|e| e.to_string());
        match parsed {
            Ok(Value::Object(map)) => {
                *self.corrupt.lock() = false;
                Ok(map)
            }
            Ok(_) => {
                *self.corrupt.lock() = true;
                Err(StorageError::Corrupt {
                    path,
                    reason: "the top level is not a JSON object".into(),
                })
            }
            Err(reason) => {
                *self.corrupt.lock() = true;
                Err(StorageError::Corrupt { path, reason })
            }
        }
    }

    fn save(&self, doc: &Map<String, Value>) -> Result<(), StorageError> {
        let path = self.path();
        if *self.corrupt.lock() {
            return Err(StorageError::Corrupt {
                path,
                reason: "refusing to overwrite a file that failed to load".into(),
            });
        }
        let write_err = |source| StorageError::Write {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(write_err)?;
        let tmp = self.dir.join(format!(".{}.tmp", Self::FILE_NAME));
        let tmp_err = |source| StorageError::Write {
            path: tmp.clone(),
            source,
        };
        // Pretty-printing a map of Values cannot fail.
        let text = serde_json::to_vec_pretty(doc).unwrap_or_default();
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(tmp_err)?;
            f.write_all(&text).map_err(tmp_err)?;
            f.write_all(b"\n").map_err(tmp_err)?;
            f.sync_all().map_err(tmp_err)?;
        }
        fs::rename(&tmp, &path).map_err(write_err)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.path().display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_is_atomic_and_keeps_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let st = FileStorage::new(dir.path().join("sub"));
        assert!(st.load().unwrap().is_empty());
        let mut doc = Map::new();
        doc.insert("future_key".into(), serde_json::json!({"x": [1, 2]}));
        st.save(&doc).unwrap();
        assert_eq!(st.load().unwrap(), doc);
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["config.json".to_string()]);
    }

    #[test]
    fn corrupt_file_is_reported_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let st = FileStorage::new(dir.path());
        fs::write(st.path(), b"{ not json").unwrap();
        let err = st.load().unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
        assert!(st.save(&Map::new()).is_err());
        assert_eq!(fs::read(st.path()).unwrap(), b"{ not json");
        fs::write(st.path(), b"[1]").unwrap();
        assert!(matches!(st.load(), Err(StorageError::Corrupt { .. })));
        fs::remove_file(st.path()).unwrap();
        assert!(st.load().unwrap().is_empty());
        st.save(&Map::new()).unwrap();
    }

    #[test]
    fn memory_storage() {
        let st = MemoryStorage::new();
        let mut doc = Map::new();
        doc.insert("a".into(), 1.into());
        st.save(&doc).unwrap();
        assert_eq!(st.load().unwrap(), doc);
        assert_eq!(st.describe(), "memory");
    }
}
