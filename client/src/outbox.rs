//! The outbox: messages the app has sent but the broker has not yet acknowledged, kept where
//! they survive the app stopping, so that an app killed between "send" and the acknowledgement
//! sends them again when it starts, without posting anything twice.
//!
//! With an outbox configured ([`ClientConfig::with_outbox`](crate::ClientConfig::with_outbox)),
//! [`Client::send_with_id`] (and so [`Client::send`]) writes the message to the outbox before
//! sending and removes it once the broker has acknowledged it or refused it for good. What is
//! left in the outbox after a crash goes out with [`Client::resend_outbox`], under the same
//! client message ids: a message that did reach the broker before the crash is acknowledged
//! again (`duplicate`), not stored twice.

use std::fmt::Debug;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;

use crate::{Client, ClientError, ErrorCode, SendAck};

/// A message waiting for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// The conversation.
    pub conversation_id: u64,
    /// The idempotency key it is sent, and resent, under.
    pub client_msg_id: String,
    /// The payload.
    pub payload: Bytes,
}

/// Why an outbox could not read or write.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// Reading or writing a file failed.
    #[error("outbox {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A file holds something other than an outbox item.
    #[error("outbox {path}: not an outbox item")]
    Corrupt {
        /// The file.
        path: PathBuf,
    },
}

/// Keeps unacknowledged messages between runs of the app. Implement it over the app's own
/// database to keep them in the same transaction as the app's copy of the message; the SDK
/// ships [`MemoryOutbox`] and [`FileOutbox`]. Calls come from the tasks that send, so keep them
/// short.
pub trait Outbox: Send + Sync + Debug + 'static {
    /// Keeps `item` (replacing one with the same client message id), durably before returning.
    ///
    /// # Errors
    /// Whatever stops the store from writing; the message is then not sent.
    fn put(&self, item: &OutboxItem) -> Result<(), OutboxError>;

    /// Forgets the item with this client message id, if there is one.
    ///
    /// # Errors
    /// Whatever stops the store from writing; the message may then be resent later, which the
    /// broker answers as a duplicate.
    fn remove(&self, client_msg_id: &str) -> Result<(), OutboxError>;

    /// Every item kept.
    ///
    /// # Errors
    /// Whatever stops the store from reading.
    fn load(&self) -> Result<Vec<OutboxItem>, OutboxError>;
}

/// An outbox for the life of the process: a send survives a reconnect, not a restart.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    items: Mutex<Vec<OutboxItem>>,
}

impl Outbox for MemoryOutbox {
    fn put(&self, item: &OutboxItem) -> Result<(), OutboxError> {
        if let Ok(mut items) = self.items.lock() {
            items.retain(|i| i.client_msg_id != item.client_msg_id);
            items.push(item.clone());
        }
        Ok(())
    }

    fn remove(&self, client_msg_id: &str) -> Result<(), OutboxError> {
        if let Ok(mut items) = self.items.lock() {
            items.retain(|i| i.client_msg_id != client_msg_id);
        }
        Ok(())
    }

    fn load(&self) -> Result<Vec<OutboxItem>, OutboxError> {
        Ok(self.items.lock().map(|items| items.clone()).unwrap_or_default())
    }
}

/// An outbox in a directory, one file per message, each written to a temporary file, synced
/// and renamed into place, so a crash leaves a whole item or none.
///
/// A file is `conversation_id` (8 bytes, big-endian), the client message id's length (2
/// bytes, big-endian), the id, then the payload; it is named by the id in hex.
#[derive(Debug, Clone)]
pub struct FileOutbox {
    dir: PathBuf,
}

impl FileOutbox {
    /// An outbox in `dir`, created if missing.
    ///
    /// # Errors
    /// [`OutboxError::Io`] if the directory cannot be created.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, OutboxError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| OutboxError::Io { path: dir.clone(), source })?;
        Ok(Self { dir })
    }

    fn path_of(&self, client_msg_id: &str) -> PathBuf {
        let name: String = client_msg_id.bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.msg"))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io { path: path.to_owned(), source }
}

fn encode(item: &OutboxItem) -> Option<Vec<u8>> {
    let id_len = u16::try_from(item.client_msg_id.len()).ok()?;
    let mut bytes = Vec::with_capacity(10 + item.client_msg_id.len() + item.payload.len());
    bytes.extend_from_slice(&item.conversation_id.to_be_bytes());
    bytes.extend_from_slice(&id_len.to_be_bytes());
    bytes.extend_from_slice(item.client_msg_id.as_bytes());
    bytes.extend_from_slice(&item.payload);
    Some(bytes)
}

fn decode(bytes: &[u8]) -> Option<OutboxItem> {
    let conversation_id = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let id_len = usize::from(u16::from_be_bytes(bytes.get(8..10)?.try_into().ok()?));
    let client_msg_id = std::str::from_utf8(bytes.get(10..10 + id_len)?).ok()?.to_owned();
    let payload = Bytes::copy_from_slice(bytes.get(10 + id_len..)?);
    Some(OutboxItem { conversation_id, client_msg_id, payload })
}

impl Outbox for FileOutbox {
    fn put(&self, item: &OutboxItem) -> Result<(), OutboxError> {
        let path = self.path_of(&item.client_msg_id);
        let bytes = encode(item).ok_or_else(|| OutboxError::Corrupt { path: path.clone() })?;
        let temporary = path.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
        file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io(&path))
    }

    fn remove(&self, client_msg_id: &str) -> Result<(), OutboxError> {
        let path = self.path_of(client_msg_id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    fn load(&self) -> Result<Vec<OutboxItem>, OutboxError> {
        let mut items = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            if path.extension().is_some_and(|e| e == "msg") {
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                items.push(decode(&bytes).ok_or(OutboxError::Corrupt { path })?);
            }
        }
        Ok(items)
    }
}

/// Whether a send's failure is final (the broker refused the message itself), so the message
/// leaves the outbox; a lost connection, a timeout or a request to slow down keep it there.
pub(crate) fn is_final(error: &ClientError) -> bool {
    match error {
        ClientError::Request { code, .. } => {
            !matches!(*code, ErrorCode::RATE_LIMITED | ErrorCode::OVERLOADED | ErrorCode::UNAVAILABLE)
        }
        ClientError::InvalidArgument(_) => true,
        _ => false,
    }
}

/// What resending one outbox item came to.
#[derive(Debug, Clone)]
pub struct Resent {
    /// The item.
    pub item: OutboxItem,
    /// The acknowledgement (`duplicate` when it had reached the broker before), or why not:
    /// a final refusal (the item left the outbox) or a failure it stays for.
    pub outcome: Result<SendAck, ClientError>,
}

impl Client {
    /// Sends again every message left in the outbox (by an app that stopped before their
    /// acknowledgement), each under its client message id, and reports each outcome. Call it
    /// once connected; without an outbox it does nothing.
    ///
    /// # Errors
    /// [`ClientError::Config`] if the outbox cannot be read.
    ///
    /// # Cancel safety
    /// Dropping the future leaves unsent items in the outbox; calling it again sends them, and
    /// those already acknowledged are gone from it.
    pub async fn resend_outbox(&self) -> Result<Vec<Resent>, ClientError> {
        let Some(outbox) = self.outbox() else { return Ok(Vec::new()) };
        let items = outbox.load().map_err(|e| ClientError::Config(e.to_string()))?;
        let mut report = Vec::with_capacity(items.len());
        for item in items {
            let outcome = self.send_once(item.conversation_id, &item.client_msg_id, item.payload.clone()).await;
            self.settle_outbox(&item.client_msg_id, &outcome);
            report.push(Resent { item, outcome });
        }
        Ok(report)
    }

    /// Takes a message out of the outbox once its send is settled for good.
    pub(crate) fn settle_outbox(&self, client_msg_id: &str, outcome: &Result<SendAck, ClientError>) {
        let settled = match outcome {
            Ok(_) => true,
            Err(e) => is_final(e),
        };
        if let (true, Some(outbox)) = (settled, self.outbox())
            && let Err(e) = outbox.remove(client_msg_id)
        {
            tracing::warn!(error = %e, client_msg_id, "cannot remove a sent message from the outbox");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, payload: &'static [u8]) -> OutboxItem {
        OutboxItem { conversation_id: 7, client_msg_id: id.into(), payload: Bytes::from_static(payload) }
    }

    #[test]
    fn a_file_outbox_keeps_items_across_instances_and_forgets_removed_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = FileOutbox::new(dir.path().join("outbox")).expect("creates");
        outbox.put(&item("a/1", b"hello")).expect("puts");
        outbox.put(&item("b", b"")).expect("puts");
        outbox.put(&item("a/1", b"hello again")).expect("replaces");
        let again = FileOutbox::new(dir.path().join("outbox")).expect("reopens");
        let mut loaded = again.load().expect("loads");
        loaded.sort_by(|x, y| x.client_msg_id.cmp(&y.client_msg_id));
        assert_eq!(loaded, [item("a/1", b"hello again"), item("b", b"")]);
        again.remove("a/1").expect("removes");
        again.remove("never").expect("removing a missing item is fine");
        assert_eq!(outbox.load().expect("loads"), [item("b", b"")]);
        std::fs::write(dir.path().join("outbox").join("bad.msg"), [1, 2]).expect("writes");
        assert!(matches!(outbox.load(), Err(OutboxError::Corrupt { .. })));
    }

    #[test]
    fn only_refusals_of_the_message_itself_are_final() {
        let refusal = |code| ClientError::Request { code, message: String::new(), retry_after: None };
        assert!(is_final(&refusal(ErrorCode::NOT_FOUND)));
        assert!(is_final(&refusal(ErrorCode::PAYLOAD_TOO_LARGE)));
        assert!(!is_final(&refusal(ErrorCode::RATE_LIMITED)));
        assert!(!is_final(&ClientError::Timeout(std::time::Duration::from_secs(1))));
        assert!(!is_final(&ClientError::ClientClosed));
    }
}
