//! The attendance loop: one thread owns every organisation's [`AttendanceMachine`] state, serves
//! check-ins, rule changes and rebinds in batches (one store write per batch), and hands back
//! each answer with the HR post it calls for. Reads are served on blocking tasks from what is
//! durable ([`super::reads`]).

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use herald_protocol::{DeviceId, ErrorCode, Frame, OrgId, RequestId, UserId, pb};
use tokio::sync::oneshot;
use tracing::{error, warn};

use super::machine::{AttendanceMachine, Snapshot, Who};
use super::wire::CheckInInput;
use crate::audit::{AuditAction, AuditEvent, AuditSink};
use crate::auth::Identity;
use crate::clock::Now;
use crate::observe::names;
use crate::store::{self, KvBackend, KvWrite, StoreError};

/// Most jobs per batch: the work budget between two store writes.
const MAX_BATCH: usize = 256;
/// Jobs queued before check-ins are refused OVERLOADED.
const QUEUE_LEN: usize = 8192;
/// Check-ins per user replayed into the anti-cheat history when an organisation is loaded.
const REPLAY_PER_USER: usize = 16;
/// How often the loop looks whether a retention sweep is due.
const SWEEP_CHECK: Duration = Duration::from_secs(60);
const DAY_MS: u64 = 86_400_000;

/// The system user that posts flagged check-ins to HR conversations.
pub const HR_POSTER: &str = "attendance-bot";
/// The device it posts from.
pub const HR_POSTER_DEVICE: &str = "broker";

/// A message to post to an HR conversation, once the check-in it reports is durable.
#[derive(Debug, Clone, PartialEq)]
pub struct HrPost {
    /// The organisation.
    pub org: OrgId,
    /// The conversation.
    pub conversation_id: u64,
    /// Its client message id (`attendance-<check_in_id>`), so a repeat is deduplicated.
    pub client_msg_id: String,
    /// The JSON payload (docs/PROTOCOL.md §16.7).
    pub payload: Bytes,
}

/// What a job produced: the answer, and for a flagged check-in, its HR post.
#[derive(Debug)]
pub struct Outcome {
    /// The answer frame (or ERROR).
    pub frame: Frame,
    /// The post to make.
    pub post: Option<HrPost>,
    /// For a recorded check-in: its flag codes (empty: accepted), for the metrics.
    pub flags: Option<Vec<String>>,
}

#[derive(Debug)]
enum Work {
    CheckIn(CheckInInput),
    RulesSet(pb::AttendanceRules),
    Rebind { user: UserId, device: Option<DeviceId> },
}

#[derive(Debug)]
struct Job {
    org: OrgId,
    caller: Identity,
    request_id: RequestId,
    work: Work,
    done: oneshot::Sender<Outcome>,
}

/// The attendance loop's handle. Dropping it stops the loop after what is queued and joins it.
#[derive(Debug)]
pub struct Attendance {
    inbox: Option<SyncSender<Box<Job>>>,
    kv: Arc<dyn KvBackend>,
    audit: Arc<dyn AuditSink>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The loop was too busy or has stopped; the caller answers OVERLOADED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Attendance {
    /// Starts the loop.
    ///
    /// # Errors
    /// The I/O error if the thread cannot be spawned.
    pub fn start(kv: Arc<dyn KvBackend>, audit: Arc<dyn AuditSink>, sync_writes: bool) -> std::io::Result<Self> {
        let (inbox, jobs) = sync_channel(QUEUE_LEN);
        let state = Loop {
            machine: AttendanceMachine::default(),
            kv: kv.clone(),
            audit: audit.clone(),
            sync_writes,
            next_sweep_ms: 0,
        };
        let thread = std::thread::Builder::new().name("herald-attendance".into()).spawn(move || state.run(&jobs))?;
        Ok(Self { inbox: Some(inbox), kv, audit, thread: Mutex::new(Some(thread)) })
    }

    /// The store, for reads.
    pub fn kv(&self) -> &Arc<dyn KvBackend> {
        &self.kv
    }

    /// Where audit events go.
    pub fn audit(&self) -> &Arc<dyn AuditSink> {
        &self.audit
    }

    fn submit(
        &self,
        org: OrgId,
        caller: Identity,
        request_id: RequestId,
        work: Work,
    ) -> Result<oneshot::Receiver<Outcome>, Busy> {
        let (done, answer) = oneshot::channel();
        let job = Box::new(Job { org, caller, request_id, work, done });
        match self.inbox.as_ref().map(|inbox| inbox.try_send(job)) {
            Some(Ok(())) => Ok(answer),
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => Err(Busy),
        }
    }

    /// Queues the caller's check-in.
    ///
    /// # Errors
    /// [`Busy`] when the queue is full.
    pub fn check_in(
        &self,
        caller: Identity,
        input: CheckInInput,
        request_id: RequestId,
    ) -> Result<oneshot::Receiver<Outcome>, Busy> {
        self.submit(caller.org.clone(), caller, request_id, Work::CheckIn(input))
    }

    /// Queues a replacement of `org`'s rules.
    ///
    /// # Errors
    /// [`Busy`] when the queue is full.
    pub fn set_rules(
        &self,
        org: OrgId,
        caller: Identity,
        rules: pb::AttendanceRules,
        request_id: RequestId,
    ) -> Result<oneshot::Receiver<Outcome>, Busy> {
        self.submit(org, caller, request_id, Work::RulesSet(rules))
    }

    /// Queues a rebind.
    ///
    /// # Errors
    /// [`Busy`] when the queue is full.
    pub fn rebind(
        &self,
        org: OrgId,
        caller: Identity,
        user: UserId,
        device: Option<DeviceId>,
        request_id: RequestId,
    ) -> Result<oneshot::Receiver<Outcome>, Busy> {
        self.submit(org, caller, request_id, Work::Rebind { user, device })
    }
}

impl Drop for Attendance {
    fn drop(&mut self) {
        self.inbox = None;
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            error!("the attendance loop panicked");
        }
    }
}

/// A served job, waiting for its batch to be durable.
struct Served {
    done: oneshot::Sender<Outcome>,
    outcome: Outcome,
    events: Vec<AuditEvent>,
}

struct Loop {
    machine: AttendanceMachine,
    kv: Arc<dyn KvBackend>,
    audit: Arc<dyn AuditSink>,
    sync_writes: bool,
    next_sweep_ms: u64,
}

fn now_ms() -> u64 {
    Now::system().unix_ms
}

fn refusal(request_id: RequestId, (code, message): (ErrorCode, String)) -> Outcome {
    Outcome { frame: Frame::error(request_id, code, message), post: None, flags: None }
}

impl Loop {
    fn run(mut self, jobs: &Receiver<Box<Job>>) {
        loop {
            let first = match jobs.recv_timeout(SWEEP_CHECK) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    self.sweep_if_due(now_ms());
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![*first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(*job),
                    Err(_) => break,
                }
            }
            self.serve(batch, now_ms());
        }
    }

    /// Serves a batch: every job against the machine, then one write, then the answers.
    fn serve(&mut self, batch: Vec<Job>, now_ms: u64) {
        let mut writes = Vec::new();
        let mut served = Vec::with_capacity(batch.len());
        for job in batch {
            let (outcome, events) = match self.ensure_loaded(&job.org) {
                Ok(()) => self.serve_one(&job, now_ms, &mut writes),
                Err(e) => (refusal(job.request_id, (ErrorCode::UNAVAILABLE, e.to_string())), Vec::new()),
            };
            served.push((job.request_id, Served { done: job.done, outcome, events }));
        }
        metrics::histogram!(names::ATTENDANCE_BATCH_JOBS).record(served.len() as f64);
        let failed = if writes.is_empty() { None } else { self.kv.write(writes, self.sync_writes).err() };
        for (request_id, s) in served {
            match &failed {
                // The machine has moved on, but the store refuses writes from now on (it is
                // poisoned), so nothing will contradict the answer.
                Some(e) => {
                    let _ = s.done.send(refusal(request_id, (ErrorCode::UNAVAILABLE, e.to_string())));
                }
                None => {
                    for event in s.events {
                        self.audit.record(event);
                    }
                    count(&s.outcome);
                    let _ = s.done.send(s.outcome);
                }
            }
        }
    }

    fn ensure_loaded(&mut self, org: &OrgId) -> Result<(), StoreError> {
        if self.machine.is_loaded(org) {
            return Ok(());
        }
        let rules = store::attendance_rules(&*self.kv, org)?;
        let bindings = store::bindings(&*self.kv, org)?;
        let mut recent = Vec::new();
        for (user, _) in &bindings {
            recent.extend(store::latest_check_ins(&*self.kv, org, user, REPLAY_PER_USER)?);
        }
        recent.sort_by_key(|r| r.at_ms);
        if let Err(e) = self.machine.load(org.clone(), Snapshot { rules, bindings, recent }) {
            warn!(%org, error = %e, "attendance rules dropped");
        }
        Ok(())
    }

    fn serve_one(&mut self, job: &Job, now_ms: u64, writes: &mut Vec<KvWrite>) -> (Outcome, Vec<AuditEvent>) {
        let (org, request_id) = (&job.org, job.request_id);
        let answer = |frame: Frame| Outcome { frame, post: None, flags: None };
        match &job.work {
            Work::CheckIn(input) => self.check_in(job, input, now_ms, writes),
            Work::RulesSet(rules) => match self.machine.set_rules(org, rules.clone()) {
                Err(refused) => (refusal(request_id, refused), Vec::new()),
                Ok(()) => {
                    writes.push(store::attendance_rules_write(org, rules));
                    let details = vec![
                        ("sites".to_owned(), rules.sites.len().to_string()),
                        ("rules".to_owned(), rules.rules.len().to_string()),
                    ];
                    let info = pb::AttendanceRulesInfo { org_id: org.to_string(), rules: Some(rules.clone()) };
                    let event = audit_event(job, now_ms, AuditAction::AttendanceRulesChanged, org.to_string(), details);
                    (answer(Frame::from_body(request_id, &info)), vec![event])
                }
            },
            Work::Rebind { user, device } => {
                self.machine.rebind(org, user, device.clone());
                writes.push(store::binding_write(org, user, device.as_ref()));
                let device_id = device.as_ref().map(ToString::to_string).unwrap_or_default();
                let details = vec![("device".to_owned(), device_id.clone())];
                let binding = pb::AttendanceBinding { user_id: user.to_string(), device_id };
                let event = audit_event(job, now_ms, AuditAction::AttendanceDeviceRebound, user.to_string(), details);
                (answer(Frame::from_body(request_id, &binding)), vec![event])
            }
        }
    }

    /// Judges a check-in; if recorded, its writes join the batch, and a flagged one is audited
    /// and gets its HR post.
    fn check_in(
        &mut self,
        job: &Job,
        input: &CheckInInput,
        now_ms: u64,
        writes: &mut Vec<KvWrite>,
    ) -> (Outcome, Vec<AuditEvent>) {
        let (org, caller, request_id) = (&job.org, &job.caller, job.request_id);
        let recorded = self
            .who(org, caller)
            .map_err(|e| (ErrorCode::UNAVAILABLE, e.to_string()))
            .and_then(|who| self.machine.check_in(org, who, input.clone(), now_ms));
        let recorded = match recorded {
            Ok(recorded) => recorded,
            Err(refused) => return (refusal(request_id, refused), Vec::new()),
        };
        writes.push(store::check_in_write(org, &caller.user, &recorded.record));
        if let Some(device) = &recorded.bound {
            writes.push(store::binding_write(org, &caller.user, Some(device)));
        }
        let record = recorded.record;
        let mut events = Vec::new();
        if !record.flags.is_empty() {
            let target = format!("{}/{}", caller.user, record.check_in_id);
            let details = record.flags.iter().map(|f| (f.code.clone(), f.value.to_string())).collect();
            events.push(audit_event(job, now_ms, AuditAction::AttendanceFlagged, target, details));
        }
        let post = recorded.hr_conversation.map(|conversation_id| HrPost {
            org: org.clone(),
            conversation_id,
            client_msg_id: format!("attendance-{}", record.check_in_id),
            payload: hr_payload(&record),
        });
        let flags = Some(record.flags.iter().map(|f| f.code.clone()).collect());
        let frame = Frame::from_body(request_id, &pb::CheckInResult { record: Some(record) });
        (Outcome { frame, post, flags }, events)
    }

    /// The caller as the rules see them: the directory's department, and the token's and the
    /// directory's roles.
    fn who(&self, org: &OrgId, caller: &Identity) -> Result<Who, StoreError> {
        let entry = store::directory_user(&*self.kv, org, &caller.user)?.unwrap_or_default();
        let mut roles: std::collections::BTreeSet<String> = entry.roles.into_iter().collect();
        roles.extend(caller.roles.as_slice().iter().cloned());
        Ok(Who { user: caller.user.clone(), device: caller.device.clone(), department: entry.department, roles })
    }

    /// Deletes expired check-ins of the loaded organisations, once a day.
    fn sweep_if_due(&mut self, now_ms: u64) {
        if now_ms < self.next_sweep_ms {
            return;
        }
        self.next_sweep_ms = now_ms + DAY_MS;
        for (org, days) in self.machine.retention() {
            let before_ms = now_ms.saturating_sub(u64::from(days) * DAY_MS);
            let swept = store::bindings(&*self.kv, &org).and_then(|users| {
                let mut deletes = Vec::new();
                for (user, _) in users {
                    deletes.extend(store::expired_check_ins(&*self.kv, &org, &user, before_ms)?);
                }
                let count = deletes.len();
                if count > 0 {
                    self.kv.write(deletes, self.sync_writes)?;
                }
                Ok(count)
            });
            match swept {
                Ok(0) => {}
                Ok(count) => tracing::info!(%org, count, "expired check-ins deleted"),
                Err(e) => warn!(%org, error = %e, "attendance retention sweep failed"),
            }
        }
    }
}

/// An audit event by the job's caller.
fn audit_event(
    job: &Job,
    now_ms: u64,
    action: AuditAction,
    target: String,
    details: Vec<(String, String)>,
) -> AuditEvent {
    AuditEvent {
        org: job.org.clone(),
        at_ms: now_ms,
        actor: job.caller.user.to_string(),
        device: job.caller.device.to_string(),
        action,
        target,
        details,
    }
}

/// Counts a durable check-in and its flags.
fn count(outcome: &Outcome) {
    let Some(flags) = &outcome.flags else { return };
    let status = if flags.is_empty() { "accepted" } else { "flagged" };
    metrics::counter!(names::CHECK_INS, names::LABEL_STATUS => status).increment(1);
    for code in flags {
        metrics::counter!(names::ATTENDANCE_FLAGS, names::LABEL_CODE => code.clone()).increment(1);
    }
}

/// The HR post's payload (docs/PROTOCOL.md §16.7).
fn hr_payload(record: &pb::CheckInRecord) -> Bytes {
    let kind = match pb::CheckInKind::try_from(record.kind) {
        Ok(pb::CheckInKind::Out) => "out",
        Ok(pb::CheckInKind::FieldVisit) => "field_visit",
        _ => "in",
    };
    let flags: Vec<serde_json::Value> = record
        .flags
        .iter()
        .map(|f| serde_json::json!({"code": f.code, "value": f.value, "subject": f.subject, "message": f.message}))
        .collect();
    let body = serde_json::json!({
        "type": "attendance.flagged",
        "check_in_id": record.check_in_id,
        "user_id": record.user_id,
        "device_id": record.device_id,
        "kind": kind,
        "at_ms": record.at_ms,
        "site_id": record.site_id,
        "rule": record.rule,
        "flags": flags,
    });
    Bytes::from(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::NoAudit;
    use crate::store::MemoryStore;

    /// A store that counts its writes.
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryStore,
        writes: std::sync::atomic::AtomicUsize,
    }

    impl KvBackend for Counting {
        fn get(&self, cf: crate::store::Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(cf, key)
        }

        fn scan(
            &self,
            cf: crate::store::Cf,
            prefix: &[u8],
            start: &[u8],
            reverse: bool,
            limit: usize,
        ) -> Result<Vec<crate::store::KvPair>, StoreError> {
            self.inner.scan(cf, prefix, start, reverse, limit)
        }

        fn write(&self, writes: Vec<KvWrite>, sync: bool) -> Result<(), StoreError> {
            self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.write(writes, sync)
        }

        fn corrupt(&self, cf: crate::store::Cf, reason: String) -> StoreError {
            self.inner.corrupt(cf, reason)
        }
    }

    /// A 9:00 burst: a whole batch of check-ins by different people costs one store write, and
    /// every one of them is answered after it.
    #[test]
    fn a_batch_of_check_ins_is_one_write() {
        use crate::attendance::{Accuracy, Fix, GeoPoint, Kind};
        let kv = Arc::new(Counting::default());
        let org = OrgId::new("acme").expect("org");
        let rules = pb::AttendanceRules {
            rules: vec![pb::AttendanceRule { name: "everyone".into(), ..Default::default() }],
            ..Default::default()
        };
        kv.write(vec![store::attendance_rules_write(&org, &rules)], false).expect("write");
        let store: Arc<dyn KvBackend> = kv.clone();
        let mut state = Loop {
            machine: AttendanceMachine::default(),
            kv: store,
            audit: Arc::new(NoAudit),
            sync_writes: false,
            next_sweep_ms: 0,
        };
        let mut answers = Vec::new();
        let batch: Vec<Job> = (0..MAX_BATCH as u64)
            .map(|i| {
                let (done, answer) = oneshot::channel();
                answers.push(answer);
                let caller = Identity {
                    org: org.clone(),
                    user: UserId::new(format!("u{i}")).expect("user"),
                    device: DeviceId::new(format!("d{i}")).expect("device"),
                    roles: crate::auth::Roles::new(vec![]),
                    expires_at_ms: u64::MAX,
                    token_id: None,
                };
                let input = CheckInInput {
                    check_in_id: i + 1,
                    kind: Kind::In,
                    client_time_ms: 0,
                    fix: Fix {
                        point: GeoPoint::new(31.0, 121.0).expect("point"),
                        accuracy: Accuracy::new(5.0).expect("acc"),
                    },
                    bssid: None,
                    ssid: String::new(),
                    liveness: None,
                    mock_location: false,
                    photo_ref: String::new(),
                    site: None,
                };
                Job { org: org.clone(), caller, request_id: RequestId::new(1), work: Work::CheckIn(input), done }
            })
            .collect();
        let before = kv.writes.load(std::sync::atomic::Ordering::Relaxed);
        state.serve(batch, 1_790_000_000_000);
        assert_eq!(kv.writes.load(std::sync::atomic::Ordering::Relaxed) - before, 1);
        for mut answer in answers {
            let outcome = answer.try_recv().expect("answered");
            let result = outcome.frame.decode_body::<pb::CheckInResult>().expect("a check-in result");
            assert_eq!(result.record.map(|r| r.status), Some(pb::CheckInStatus::Accepted as i32));
        }
        let stored = store::check_ins(&*kv, &org, &UserId::new("u7").expect("user"), 0, u64::MAX).expect("scan");
        assert_eq!(stored.len(), 1);
    }

    #[test]
    fn the_daily_sweep_deletes_check_ins_past_retention() {
        let kv: Arc<dyn KvBackend> = Arc::new(MemoryStore::default());
        let org = OrgId::new("acme").expect("org");
        let ann = UserId::new("ann").expect("user");
        let now = 1_790_000_000_000;
        let record = |id: u64, at_ms: u64| pb::CheckInRecord { check_in_id: id, at_ms, ..Default::default() };
        let rules = pb::AttendanceRules { retention_days: 2, ..Default::default() };
        let writes = vec![
            store::attendance_rules_write(&org, &rules),
            store::binding_write(&org, &ann, None),
            store::check_in_write(&org, &ann, &record(1, now - 3 * DAY_MS)),
            store::check_in_write(&org, &ann, &record(2, now - DAY_MS)),
        ];
        kv.write(writes, false).expect("write");
        let mut state = Loop {
            machine: AttendanceMachine::default(),
            kv: kv.clone(),
            audit: Arc::new(NoAudit),
            sync_writes: false,
            next_sweep_ms: 0,
        };
        state.ensure_loaded(&org).expect("load");
        state.sweep_if_due(now);
        let left: Vec<u64> =
            store::check_ins(&*kv, &org, &ann, 0, u64::MAX).expect("scan").iter().map(|r| r.check_in_id).collect();
        assert_eq!(left, vec![2]);
        assert_eq!(state.next_sweep_ms, now + DAY_MS, "once a day");
    }
}
