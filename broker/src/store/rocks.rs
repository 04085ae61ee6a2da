//! The RocksDB store: one database, a column family per kind of record, all options and key
//! encodings in this file.

use std::path::{Path, PathBuf};

use herald_protocol::OrgId;
use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};

/// The on-disk format this code writes. A database with another version is refused at open,
/// so an old binary never misreads a newer layout.
const FORMAT_VERSION: u32 = 1;

/// Column family of store-wide metadata (`format_version`).
const CF_META: &str = "meta";
/// Column family of served organisations: key = org id, value = empty.
const CF_ORGS: &str = "orgs";
/// Every column family this version uses.
const COLUMN_FAMILIES: &[&str] = &[CF_META, CF_ORGS];

const KEY_FORMAT_VERSION: &[u8] = b"format_version";

/// Why the store failed. Every variant names the database path or the corruption it found.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB reported an error (I/O, corruption, lock held by another process).
    #[error("database {path}: {source}")]
    Rocks {
        /// The database directory.
        path: PathBuf,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// The database was written by an incompatible version of Herald.
    #[error("database {path} has format version {found}; this broker reads version {FORMAT_VERSION}")]
    FormatVersion {
        /// The database directory.
        path: PathBuf,
        /// The version found on disk.
        found: String,
    },
    /// A stored record does not decode.
    #[error("database {path}: corrupt record in {cf}: {reason}")]
    Corrupt {
        /// The database directory.
        path: PathBuf,
        /// The column family.
        cf: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The broker's RocksDB database.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RocksStore {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// # Errors
    /// [`StoreError::Rocks`] if RocksDB cannot open it (another broker holds the lock, the disk
    /// fails, the files are corrupt); [`StoreError::FormatVersion`] for an incompatible layout.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Corruption found while reading the WAL stops the open instead of silently dropping
        // records: an acknowledged write must come back or the operator must be told.
        options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::AbsoluteConsistency);
        options.set_paranoid_checks(true);
        let descriptors = COLUMN_FAMILIES.iter().map(|cf| ColumnFamilyDescriptor::new(*cf, Options::default()));
        let db = DB::open_cf_descriptors(&options, path, descriptors)
            .map_err(|source| StoreError::Rocks { path: path.to_owned(), source })?;
        let store = Self { db, path: path.to_owned() };
        store.check_format_version()?;
        Ok(store)
    }

    fn rocks_err(&self) -> impl FnOnce(rocksdb::Error) -> StoreError + '_ {
        |source| StoreError::Rocks { path: self.path.clone(), source }
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db.cf_handle(name).ok_or_else(|| StoreError::Corrupt {
            path: self.path.clone(),
            cf: name,
            reason: "column family missing".into(),
        })
    }

    fn check_format_version(&self) -> Result<(), StoreError> {
        let meta = self.cf(CF_META)?;
        match self.db.get_cf(meta, KEY_FORMAT_VERSION).map_err(self.rocks_err())? {
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(meta, KEY_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes());
                self.write(batch)
            }
            Some(v) if v.as_slice() == FORMAT_VERSION.to_be_bytes() => Ok(()),
            Some(v) => Err(StoreError::FormatVersion { path: self.path.clone(), found: format!("{v:02x?}") }),
        }
    }

    /// Writes `batch` atomically and syncs the WAL before returning: durable on return.
    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options).map_err(self.rocks_err())
    }

    /// Records that the broker serves each of `orgs` (idempotent).
    ///
    /// # Errors
    /// [`StoreError::Rocks`] if the write fails.
    pub fn ensure_orgs(&self, orgs: &[OrgId]) -> Result<(), StoreError> {
        let cf = self.cf(CF_ORGS)?;
        let mut batch = WriteBatch::default();
        for org in orgs {
            batch.put_cf(cf, org.as_str().as_bytes(), []);
        }
        self.write(batch)
    }

    /// Every organisation the broker serves.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails or a key is not a valid organisation id.
    pub fn orgs(&self) -> Result<Vec<OrgId>, StoreError> {
        let cf = self.cf(CF_ORGS)?;
        self.db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .map(|item| {
                let (key, _) = item.map_err(self.rocks_err())?;
                let corrupt = |reason: String| StoreError::Corrupt { path: self.path.clone(), cf: CF_ORGS, reason };
                let id = String::from_utf8(key.into_vec()).map_err(|e| corrupt(e.to_string()))?;
                OrgId::new(id).map_err(|e| corrupt(e.to_string()))
            })
            .collect()
    }

    /// Flushes memtables to SST files, so the next start replays no WAL. Called at shutdown.
    ///
    /// # Errors
    /// [`StoreError::Rocks`] if the flush fails.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(self.rocks_err())?;
        for name in COLUMN_FAMILIES {
            self.db.flush_cf(self.cf(name)?).map_err(self.rocks_err())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(id: &str) -> OrgId {
        OrgId::new(id).expect("valid")
    }

    #[test]
    fn orgs_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = RocksStore::open(dir.path()).expect("open");
            store.ensure_orgs(&[org("acme"), org("globex")]).expect("write");
            store.ensure_orgs(&[org("acme")]).expect("idempotent");
        }
        let store = RocksStore::open(dir.path()).expect("reopen");
        assert_eq!(store.orgs().expect("read"), vec![org("acme"), org("globex")]);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = RocksStore::open(dir.path()).expect("open");
        let err = RocksStore::open(dir.path()).expect_err("lock held");
        assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn an_unknown_format_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = RocksStore::open(dir.path()).expect("open");
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(CF_META).expect("cf"), KEY_FORMAT_VERSION, 99u32.to_be_bytes());
            store.write(batch).expect("write");
        }
        assert!(matches!(RocksStore::open(dir.path()), Err(StoreError::FormatVersion { .. })));
    }
}
