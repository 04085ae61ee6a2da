//! Why a store operation failed. Shared by every backend, so the in-memory store (and the
//! fuzz targets built on it) need no RocksDB.

use std::path::PathBuf;

/// Why the store failed. Every variant names the database path or the corruption it found.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB reported an error (I/O, corruption, lock held by another process).
    #[cfg(feature = "rocksdb")]
    #[error("database {path}: {source}")]
    Rocks {
        /// The database directory.
        path: PathBuf,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// The database was written by an incompatible version of Herald.
    #[error("database {path} has format version {found}; this broker reads version {supported}")]
    FormatVersion {
        /// The database directory.
        path: PathBuf,
        /// The version found on disk.
        found: String,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A write failed earlier; the store refuses every write until the broker restarts and
    /// recovers from its log, rather than carry on with state it cannot vouch for.
    #[error("store refuses writes after a failed write: {0}")]
    Poisoned(String),
    /// The backend cannot do what was asked (a checkpoint of an in-memory store).
    #[error("not supported by this store: {0}")]
    Unsupported(&'static str),
    /// The database came back with fewer writes than it had committed: the newest WAL lost
    /// records that were synced (truncated, or a damaged record dropped as if it were a torn
    /// tail). Starting would silently lose acknowledged data, so the open is refused.
    #[error(
        "database {path}: the write-ahead log is truncated or corrupt: writes up to sequence {committed} were \
         committed but only {recovered} were recovered; restore the data directory from a backup, or delete \
         {watermark} to start with the loss"
    )]
    WalTruncated {
        /// The database directory.
        path: PathBuf,
        /// The last sequence number the store had committed (its watermark).
        committed: u64,
        /// The last sequence number RocksDB recovered.
        recovered: u64,
        /// The watermark file.
        watermark: PathBuf,
    },
    /// The store's own files beside RocksDB's (the WAL watermark) cannot be read or written.
    #[error("database {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
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
