//! The WAL watermark: the last RocksDB sequence number a synced write reached, kept in a small
//! file beside the database and checked at the next open.
//!
//! The store tolerates a torn last WAL record, because a kill in the middle of a write leaves
//! one and that batch was never acknowledged. But a WAL cut short, or a damaged record near the
//! end, looks the same to RocksDB: it recovers up to the damage and opens without complaint,
//! while batches after it had been acknowledged. The watermark tells the two apart: after a kill
//! every acknowledged batch is at or below it, so recovering less than the watermark means
//! acknowledged data is gone, and the open is refused.
//!
//! The file is written after each synced write but not itself synced: a process crash keeps it
//! (the page cache survives `kill -9`), and after a power loss it can only be older than the WAL,
//! which was synced first, so the check is then weaker but never wrong.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use super::StoreError;

/// The watermark file's name in the database directory. RocksDB ignores files it did not name.
const FILE_NAME: &str = "HERALD-WAL-WATERMARK";

/// The open watermark file and the value last written to it.
#[derive(Debug)]
pub(super) struct WalWatermark {
    state: Mutex<(File, u64)>,
}

impl WalWatermark {
    /// Compares the watermark left by the last run with `recovered`, the last sequence number
    /// RocksDB brought back, then opens the file to carry on from there.
    ///
    /// # Errors
    /// [`StoreError::WalTruncated`] if less was recovered than was committed;
    /// [`StoreError::Io`] if the file cannot be read or opened.
    pub(super) fn check_and_open(db: &Path, recovered: u64) -> Result<Self, StoreError> {
        let path = db.join(FILE_NAME);
        let io = |source| StoreError::Io { path: path.clone(), source };
        let committed = match std::fs::read(&path) {
            // Anything but eight bytes is a file whose first write never finished: no claim.
            Ok(bytes) => <[u8; 8]>::try_from(bytes.as_slice()).map_or(0, u64::from_be_bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(e)),
        };
        if recovered < committed {
            return Err(StoreError::WalTruncated { path: db.to_owned(), committed, recovered, watermark: path });
        }
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io)?;
        let watermark = Self { state: Mutex::new((file, committed)) };
        watermark.advance(recovered);
        Ok(watermark)
    }

    /// Records that writes up to `seq` are in the WAL. Never moves back; a failed write of the
    /// file is logged and skipped, since an older watermark only weakens the next check.
    pub(super) fn advance(&self, seq: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (file, written) = &mut *state;
        if seq <= *written {
            return;
        }
        let written_at_start = file.seek(SeekFrom::Start(0)).and_then(|_| file.write_all(&seq.to_be_bytes()));
        match written_at_start {
            Ok(()) => *written = seq,
            Err(e) => tracing::warn!(error = %e, "cannot record the WAL watermark"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovering_less_than_was_committed_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let watermark = WalWatermark::check_and_open(dir.path(), 5).expect("first open");
        watermark.advance(9);
        watermark.advance(7);
        drop(watermark);
        assert!(WalWatermark::check_and_open(dir.path(), 9).is_ok(), "all of it recovered");
        let err = WalWatermark::check_and_open(dir.path(), 8).expect_err("one write short");
        assert!(matches!(err, StoreError::WalTruncated { committed: 9, recovered: 8, .. }), "{err}");
        assert!(err.to_string().contains("truncated or corrupt"), "{err}");
    }
}
