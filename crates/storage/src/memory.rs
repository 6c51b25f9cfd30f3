//! The in-memory driver: for tests and for throwaway registries (`storage: inmemory`, as in
//! registry:2). Directories are implicit, as on an object store, which keeps the conformance
//! suite honest about what the filesystem gives for free.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::driver::check_path;
use crate::{ByteStream, FileInfo, FileWriter, StorageDriver, StorageError};

struct Entry {
    data: Vec<u8>,
    modified: SystemTime,
}

type Files = Arc<Mutex<BTreeMap<String, Entry>>>;

/// Storage in a map from path to content.
#[derive(Clone, Default)]
pub struct InMemoryDriver {
    files: Files,
}

impl InMemoryDriver {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        lock(&self.files)
    }
}

/// A poisoned lock only means another test thread panicked; the map itself is still consistent.
fn lock(files: &Files) -> MutexGuard<'_, BTreeMap<String, Entry>> {
    files.lock().unwrap_or_else(|e| e.into_inner())
}

fn dir_prefix(path: &str) -> String {
    if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
}

#[async_trait]
impl StorageDriver for InMemoryDriver {
    fn name(&self) -> &'static str {
        "inmemory"
    }

    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError> {
        check_path(path)?;
        let files = self.lock();
        let entry = files
            .get(path)
            .ok_or_else(|| StorageError::NotFound(path.to_owned()))?;
        Ok(Bytes::copy_from_slice(&entry.data))
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        check_path(path)?;
        self.lock().insert(
            path.to_owned(),
            Entry {
                data: content.to_vec(),
                modified: SystemTime::now(),
            },
        );
        Ok(())
    }

    async fn put_content_if_absent(
        &self,
        path: &str,
        content: Bytes,
    ) -> Result<bool, StorageError> {
        check_path(path)?;
        let mut files = self.lock();
        if files.contains_key(path) {
            return Ok(false);
        }
        files.insert(
            path.to_owned(),
            Entry {
                data: content.to_vec(),
                modified: SystemTime::now(),
            },
        );
        Ok(true)
    }

    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        let content = self.get_content(path).await?;
        let start = (offset as usize).min(content.len());
        let end = len.map_or(content.len(), |l| (start + l as usize).min(content.len()));
        let chunk = content.slice(start..end);
        Ok(Box::pin(futures_util::stream::iter([Ok(chunk)])))
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        check_path(path)?;
        Ok(Box::new(MemWriter {
            files: self.files.clone(),
            path: path.to_owned(),
            data: Vec::new(),
        }))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError> {
        check_path(path)?;
        let files = self.lock();
        if let Some(e) = files.get(path) {
            return Ok(FileInfo {
                size: e.data.len() as u64,
                modified: e.modified,
                is_dir: false,
            });
        }
        let prefix = dir_prefix(path);
        let newest = files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, e)| e.modified)
            .max();
        match newest {
            Some(modified) => Ok(FileInfo {
                size: 0,
                modified,
                is_dir: true,
            }),
            None => Err(StorageError::NotFound(path.to_owned())),
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError> {
        check_path(path)?;
        let prefix = dir_prefix(path);
        let files = self.lock();
        let mut names: Vec<String> = files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| k[prefix.len()..].split('/').next().map(str::to_owned))
            .collect();
        names.dedup();
        if names.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(names)
    }

    async fn move_file(&self, src: &str, dst: &str) -> Result<(), StorageError> {
        check_path(src)?;
        check_path(dst)?;
        let mut files = self.lock();
        let entry = files
            .remove(src)
            .ok_or_else(|| StorageError::NotFound(src.to_owned()))?;
        files.insert(dst.to_owned(), entry);
        Ok(())
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        check_path(path)?;
        let prefix = dir_prefix(path);
        let mut files = self.lock();
        let before = files.len();
        files.retain(|k, _| k != path && !k.starts_with(&prefix));
        if files.len() == before {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(())
    }
}

/// Collects the content and inserts it whole at `commit`.
struct MemWriter {
    files: Files,
    path: String,
    data: Vec<u8>,
}

#[async_trait]
impl FileWriter for MemWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.data.extend_from_slice(&data);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        let this = *self;
        lock(&this.files).insert(
            this.path,
            Entry {
                data: this.data,
                modified: SystemTime::now(),
            },
        );
        Ok(())
    }

    async fn cancel(self: Box<Self>) -> Result<(), StorageError> {
        Ok(())
    }
}
