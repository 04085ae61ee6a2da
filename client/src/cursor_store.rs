//! Where the SDK keeps, per conversation, the newest sequence number it handed to the app, so an
//! app that restarts resumes where it was: on connecting, the SDK asks the broker which of those
//! conversations moved and hands out exactly what came meanwhile.

use std::fmt::Debug;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

/// Why a cursor store could not load or save.
#[derive(Debug, thiserror::Error)]
pub enum CursorStoreError {
    /// Reading or writing the file failed.
    #[error("cursor store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The file holds something other than cursors.
    #[error("cursor store {path}, line {line}: not `<conversation> <seq>`")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The first bad line, from 1.
        line: usize,
    },
}

/// Keeps cursors between runs of the app. Implement it over the app's own database to save the
/// cursors in the same transaction as the messages they cover; the SDK ships [`MemoryCursors`]
/// and [`FileCursors`].
pub trait CursorStore: Send + Sync + Debug + 'static {
    /// Every cursor saved so far, as (conversation id, newest sequence number handed out).
    ///
    /// # Errors
    /// Whatever stops the store from reading; the client then starts without cursors.
    fn load(&self) -> Result<Vec<(u64, u64)>, CursorStoreError>;

    /// Replaces the saved cursors with `cursors`. Called from the SDK's event task after it has
    /// handed out new entries, at most every few hundred milliseconds, and when the client stops.
    ///
    /// # Errors
    /// Whatever stops the store from writing; the SDK logs it and tries again later.
    fn save(&self, cursors: &[(u64, u64)]) -> Result<(), CursorStoreError>;
}

/// Cursors kept for the life of the process: reconnects resume, restarts do not.
#[derive(Debug, Default)]
pub struct MemoryCursors {
    saved: Mutex<Vec<(u64, u64)>>,
}

impl CursorStore for MemoryCursors {
    fn load(&self) -> Result<Vec<(u64, u64)>, CursorStoreError> {
        Ok(self.saved.lock().map(|saved| saved.clone()).unwrap_or_default())
    }

    fn save(&self, cursors: &[(u64, u64)]) -> Result<(), CursorStoreError> {
        if let Ok(mut saved) = self.saved.lock() {
            *saved = cursors.to_vec();
        }
        Ok(())
    }
}

/// Cursors in a small text file, one `<conversation> <seq>` per line, replaced atomically (a
/// new file renamed over the old), so a crash leaves the previous cursors or the new ones, never
/// a torn mix.
#[derive(Debug, Clone)]
pub struct FileCursors {
    path: PathBuf,
}

impl FileCursors {
    /// Cursors kept in `path` (created on the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    fn io(&self, source: std::io::Error) -> CursorStoreError {
        CursorStoreError::Io { path: self.path.clone(), source }
    }
}

impl CursorStore for FileCursors {
    fn load(&self) -> Result<Vec<(u64, u64)>, CursorStoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                let mut fields = line.split_whitespace().map(str::parse::<u64>);
                match (fields.next(), fields.next(), fields.next()) {
                    (Some(Ok(conversation)), Some(Ok(seq)), None) => Ok((conversation, seq)),
                    _ => Err(CursorStoreError::Corrupt { path: self.path.clone(), line: n + 1 }),
                }
            })
            .collect()
    }

    fn save(&self, cursors: &[(u64, u64)]) -> Result<(), CursorStoreError> {
        let mut text = String::with_capacity(cursors.len() * 24);
        for (conversation, seq) in cursors {
            text.push_str(&format!("{conversation} {seq}\n"));
        }
        let temporary = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary).map_err(|e| self.io(e))?;
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| self.io(e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_cursors_round_trip_and_refuse_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileCursors::new(dir.path().join("cursors"));
        assert!(store.load().expect("missing file is empty").is_empty());
        store.save(&[(7, 41), (9, 3)]).expect("save");
        let mut loaded = store.load().expect("load");
        loaded.sort_unstable();
        assert_eq!(loaded, [(7, 41), (9, 3)]);
        store.save(&[(7, 42)]).expect("save again");
        assert_eq!(store.load().expect("load"), [(7, 42)], "a save replaces");
        std::fs::write(dir.path().join("cursors"), "7 42\nseven 1\n").expect("write");
        assert!(matches!(store.load(), Err(CursorStoreError::Corrupt { line: 2, .. })));
    }

    #[test]
    fn memory_cursors_keep_the_last_save() {
        let store = MemoryCursors::default();
        store.save(&[(1, 2)]).expect("save");
        assert_eq!(store.load().expect("load"), [(1, 2)]);
    }
}
