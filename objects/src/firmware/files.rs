//! File-backed firmware storage and state store (feature `std`).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{FirmwareSnapshot, FirmwareStateStore, FirmwareStorage, StateStoreError, StorageError};

/// A [`FirmwareStateStore`] in a text file ([`FirmwareSnapshot::encode`]).
/// Saving writes `<path>.tmp`, syncs it and renames it over `path`, so a
/// power cut leaves the old or the new state, never half of one.
#[derive(Debug, Clone)]
pub struct FileStateStore {
    path: PathBuf,
}

/// Largest state file read (a snapshot is well under 2 KiB).
const MAX_STATE_FILE: u64 = 16 * 1024;

impl FileStateStore {
    /// A store in `path` (created at the first save).
    pub fn new(path: impl Into<PathBuf>) -> FileStateStore {
        FileStateStore { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, what: &str, e: std::io::Error) -> StateStoreError {
        StateStoreError::Io {
            message: format!("{what} {}: {e}", self.path.display()),
        }
    }
}

impl FirmwareStateStore for FileStateStore {
    fn load(&mut self) -> Result<Option<FirmwareSnapshot>, StateStoreError> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("cannot read", e)),
        };
        if meta.len() > MAX_STATE_FILE {
            return Err(StateStoreError::Io {
                message: format!(
                    "{} is {} bytes, expected a firmware state file of at most {MAX_STATE_FILE}",
                    self.path.display(),
                    meta.len()
                ),
            });
        }
        let text = std::fs::read_to_string(&self.path).map_err(|e| self.io("cannot read", e))?;
        FirmwareSnapshot::decode(&text)
            .map(Some)
            .map_err(StateStoreError::Corrupt)
    }

    fn save(&mut self, snapshot: &FirmwareSnapshot) -> Result<(), StateStoreError> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(snapshot.encode().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| self.io("cannot write", e))
    }
}

/// A [`FirmwareStorage`] writing the image to a file: `begin` truncates it,
/// `abort` removes it, [`FirmwareStorage::resume`] reopens it after a
/// reboot (truncated to what the saved state counts). Any I/O error is
/// reported as [`StorageError::OutOfStorage`] (Update Result 2).
#[derive(Debug)]
pub struct FileStorage {
    path: PathBuf,
    file: Option<File>,
    capacity: u64,
    len: u64,
    finished: bool,
}

impl FileStorage {
    /// A storage in `path` holding at most `capacity` bytes. An image left
    /// there by a previous run is used only once the state machine restores
    /// it (Downloaded, Updating) or resumes it.
    pub fn new(path: impl Into<PathBuf>, capacity: u64) -> FileStorage {
        FileStorage {
            path: path.into(),
            file: None,
            capacity,
            len: 0,
            finished: false,
        }
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The image bytes (for the installer): the file's content.
    pub fn read_image(&self) -> std::io::Result<Vec<u8>> {
        std::fs::read(&self.path)
    }
}

impl FirmwareStorage for FileStorage {
    fn begin(&mut self) -> Result<(), StorageError> {
        let file = File::create(&self.path).map_err(|_| StorageError::OutOfStorage)?;
        self.file = Some(file);
        self.len = 0;
        self.finished = false;
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let file = self.file.as_mut().ok_or(StorageError::OutOfStorage)?;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= self.capacity)
            .ok_or(StorageError::OutOfStorage)?;
        if self.finished || offset != self.len {
            return Err(StorageError::OutOfStorage);
        }
        file.write_all(data)
            .map_err(|_| StorageError::OutOfStorage)?;
        self.len = end;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), StorageError> {
        let file = self.file.take().ok_or(StorageError::OutOfStorage)?;
        file.sync_all().map_err(|_| StorageError::OutOfStorage)?;
        self.finished = true;
        Ok(())
    }

    fn abort(&mut self) {
        self.file = None;
        self.len = 0;
        self.finished = false;
        let _ = std::fs::remove_file(&self.path);
    }

    fn resume(&mut self, len: u64) -> Result<(), StorageError> {
        let mut file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|_| StorageError::OutOfStorage)?;
        let on_disk = file
            .metadata()
            .map_err(|_| StorageError::OutOfStorage)?
            .len();
        if on_disk < len || len > self.capacity {
            return Err(StorageError::OutOfStorage);
        }
        file.set_len(len).map_err(|_| StorageError::OutOfStorage)?;
        file.seek(SeekFrom::Start(len))
            .map_err(|_| StorageError::OutOfStorage)?;
        self.file = Some(file);
        self.len = len;
        self.finished = false;
        Ok(())
    }
}
