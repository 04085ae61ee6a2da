//! A key store in a directory: `identity` and `state`, each replaced atomically.
//!
//! A save writes a temporary file in the same directory (created `0600` on unix), fsyncs it,
//! renames it over the record and fsyncs the directory, so after a crash the record is the old
//! one or the new one, whole. The old file's blocks are released to the filesystem, not wiped:
//! full-disk encryption is what protects a stolen device's free space (docs/SECURITY.md).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{KeyStore, KeyStoreError, StoredIdentity};

const IDENTITY: &str = "identity";
const STATE: &str = "state";

/// Identity and state as two files in one directory (created on the first save).
#[derive(Debug, Clone)]
pub struct FileKeyStore {
    dir: PathBuf,
}

impl FileKeyStore {
    /// A store in `dir`. Give each device its own directory, readable by the app only.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn io(path: &Path, source: std::io::Error) -> KeyStoreError {
        KeyStoreError::Io { path: path.to_path_buf(), source }
    }

    fn read(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError> {
        let path = self.dir.join(name);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io(&path, e)),
        };
        let mut out = Zeroizing::new(Vec::new());
        file.read_to_end(&mut out).map_err(|e| Self::io(&path, e))?;
        Ok(Some(out))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), KeyStoreError> {
        create_private_dir(&self.dir).map_err(|e| Self::io(&self.dir, e))?;
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let mut file = private_file(&temporary).map_err(|e| Self::io(&temporary, e))?;
        file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| Self::io(&temporary, e))?;
        drop(file);
        std::fs::rename(&temporary, &path).map_err(|e| Self::io(&path, e))?;
        sync_dir(&self.dir).map_err(|e| Self::io(&self.dir, e))
    }
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).create(true).truncate(true).open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Makes the rename durable: on unix a directory entry is only on disk once the directory is.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

impl KeyStore for FileKeyStore {
    fn load_identity(&self) -> Result<Option<StoredIdentity>, KeyStoreError> {
        self.read(IDENTITY)?.map(|bytes| StoredIdentity::from_bytes(&bytes)).transpose()
    }

    fn save_identity(&self, identity: &StoredIdentity) -> Result<(), KeyStoreError> {
        self.write(IDENTITY, &identity.to_bytes())
    }

    fn load_state(&self) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError> {
        self.read(STATE)
    }

    fn save_state(&self, state: &[u8]) -> Result<(), KeyStoreError> {
        self.write(STATE, state)
    }
}
