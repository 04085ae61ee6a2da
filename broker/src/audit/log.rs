//! The audit writer: one thread that owns every organisation's chain head and appends records.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use herald_protocol::OrgId;
use tracing::{error, warn};

use super::{AuditAction, AuditEvent, AuditRecord, ChainError, verify_chain};
use crate::observe::names;
use crate::store::{KvBackend, StoreError, append_audit, audit_head, scan_audit};

/// Events waiting for the writer before new ones are dropped (with a warning): a burst of failed
/// logins must not grow memory without bound.
const QUEUE: usize = 65_536;

/// Where audited components hand their events. The broker's is [`AuditLog`]; tests of a single
/// component may use a sink that collects or ignores.
pub trait AuditSink: Send + Sync + std::fmt::Debug + 'static {
    /// Records an event; never blocks the caller.
    fn record(&self, event: AuditEvent);
}

/// A sink that drops every event: for components run without an audit log (tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&self, _event: AuditEvent) {}
}

/// The audit log's writer thread and its inbox. Dropping it writes what is queued and joins the
/// thread.
#[derive(Debug)]
pub struct AuditLog {
    inbox: Mutex<Option<SyncSender<AuditEvent>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog {
    /// Starts the writer over `store`; with `sync`, each batch is durable before the next.
    ///
    /// # Errors
    /// The I/O error if the thread cannot be spawned.
    pub fn start(store: Arc<dyn KvBackend>, sync: bool) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        let thread =
            std::thread::Builder::new().name("herald-audit".into()).spawn(move || write_loop(&*store, &rx, sync))?;
        Ok(Self { inbox: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) })
    }

    /// Writes what is queued and stops the writer.
    pub fn stop(&self) {
        drop(self.inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.stop();
    }
}

impl AuditSink for AuditLog {
    fn record(&self, event: AuditEvent) {
        let inbox = self.inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(tx) = inbox.as_ref() else { return };
        match tx.try_send(event) {
            Ok(()) => metrics::counter!(names::AUDIT_EVENTS).increment(1),
            Err(TrySendError::Full(event)) => {
                metrics::counter!(names::AUDIT_DROPPED).increment(1);
                warn!(org = %event.org, action = event.action.name(), "audit queue full; event dropped");
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn write_loop(store: &dyn KvBackend, inbox: &Receiver<AuditEvent>, sync: bool) {
    let mut heads: HashMap<OrgId, (u64, [u8; 32])> = HashMap::new();
    while let Ok(first) = inbox.recv() {
        let batch: Vec<AuditEvent> = std::iter::once(first).chain(inbox.try_iter().take(1023)).collect();
        let mut records = Vec::with_capacity(batch.len());
        let mut staged = heads.clone();
        for event in batch {
            let head = match staged.get(&event.org) {
                Some(head) => *head,
                None => match audit_head(store, &event.org) {
                    Ok(head) => head,
                    Err(e) => {
                        error!(error = %e, org = %event.org, "audit chain head unreadable; event dropped");
                        continue;
                    }
                },
            };
            let record = AuditRecord::chained(head.0 + 1, event, head.1);
            staged.insert(record.event.org.clone(), (record.seq, record.hash));
            records.push(record);
        }
        match append_audit(store, &records, sync) {
            Ok(()) => heads = staged,
            Err(e) => error!(error = %e, records = records.len(), "audit records not written"),
        }
    }
}

/// Which records an audit query returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this actor's.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only at or after this time, Unix milliseconds.
    pub since_ms: Option<u64>,
    /// Only before this time, Unix milliseconds.
    pub until_ms: Option<u64>,
}

impl AuditQuery {
    fn matches(&self, record: &AuditRecord) -> bool {
        let e = &record.event;
        self.actor.as_ref().is_none_or(|a| *a == e.actor)
            && self.action.is_none_or(|a| a == e.action)
            && self.since_ms.is_none_or(|t| e.at_ms >= t)
            && self.until_ms.is_none_or(|t| e.at_ms < t)
    }

    /// The organisation's records that match, in chain order.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails; an unreadable record is reported as corrupt.
    pub fn run(&self, store: &dyn KvBackend, org: &OrgId) -> Result<Vec<AuditRecord>, StoreError> {
        let mut found = Vec::new();
        let mut unreadable = None;
        scan_audit(store, org, |record| match record {
            Ok(record) => {
                if self.matches(&record) {
                    found.push(record);
                }
                true
            }
            Err(reason) => {
                unreadable = Some(reason);
                false
            }
        })?;
        match unreadable {
            Some(reason) => Err(store.corrupt(crate::store::Cf::Audit, reason)),
            None => Ok(found),
        }
    }
}

/// Verifies an organisation's whole chain. Returns how many records it holds.
///
/// # Errors
/// The outer error if the store cannot be read; the inner one names the first break.
pub fn verify_org(store: &dyn KvBackend, org: &OrgId) -> Result<Result<u64, ChainError>, StoreError> {
    let mut records = Vec::new();
    scan_audit(store, org, |record| {
        records.push(record);
        true
    })?;
    Ok(verify_chain(records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Cf, MemoryStore};

    fn event(org: &str, n: u64) -> AuditEvent {
        AuditEvent {
            org: OrgId::new(org).expect("valid"),
            at_ms: n,
            actor: format!("user{}", n % 2),
            device: "d".into(),
            action: if n.is_multiple_of(3) { AuditAction::Login } else { AuditAction::MembersChanged },
            target: format!("c{n}"),
            details: vec![],
        }
    }

    #[test]
    fn the_writer_chains_each_organisation_and_survives_a_restart() {
        let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
        for round in 0..2 {
            let log = AuditLog::start(store.clone(), true).expect("start");
            for n in 1..=10 {
                log.record(event("acme", round * 10 + n));
                log.record(event("globex", n));
            }
            log.stop();
        }
        let acme = OrgId::new("acme").expect("valid");
        assert_eq!(verify_org(&*store, &acme).expect("read"), Ok(20), "the second run continued the chain");
        assert_eq!(verify_org(&*store, &OrgId::new("globex").expect("valid")).expect("read"), Ok(20));
        let query =
            AuditQuery { actor: Some("user1".into()), action: Some(AuditAction::Login), ..AuditQuery::default() };
        let found = query.run(&*store, &acme).expect("read");
        assert_eq!(found.iter().map(|r| r.event.at_ms).collect::<Vec<_>>(), [3, 9, 15]);
        let window = AuditQuery { since_ms: Some(5), until_ms: Some(8), ..AuditQuery::default() };
        assert_eq!(window.run(&*store, &acme).expect("read").len(), 3);
    }

    #[test]
    fn tampering_in_the_store_is_detected() {
        let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
        let log = AuditLog::start(store.clone(), true).expect("start");
        for n in 1..=5 {
            log.record(event("acme", n));
        }
        log.stop();
        let acme = OrgId::new("acme").expect("valid");
        let key = crate::store::audit_key(&acme, 3);
        let original = store.get(Cf::Audit, &key).expect("read").expect("stored");
        let mut altered = AuditRecord::decode(&acme, &original).expect("decodes");
        altered.event.actor = "mallory".into();
        store.write(vec![(Cf::Audit, key.clone(), Some(altered.encode()))], true).expect("write");
        assert_eq!(verify_org(&*store, &acme).expect("read"), Err(ChainError::Altered { seq: 3 }));
        store.write(vec![(Cf::Audit, key, None)], true).expect("delete");
        assert_eq!(verify_org(&*store, &acme).expect("read"), Err(ChainError::Broken { seq: 4, expected: 3 }));
    }
}
