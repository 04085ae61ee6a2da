//! The call loop: one thread owns every call ([`CallTable`]), so a call's state has one owner
//! and no lock. Sessions hand it requests and disconnects through a bounded queue; it answers
//! each request, wakes for ring timeouts, graces and delta windows, and performs what the table
//! asks: pushes through the session registry, audit events, call records for the shards.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use herald_protocol::{Frame, OrgId, RequestId, UserId};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::config::CallsConfig;
use super::machine::CallId;
use super::participant::Endpoint;
use super::table::{Admission, CallTable, Caller, Out, Target};
use super::wire::CallRequest;
use crate::admin::OrgTable;
use crate::audit::AuditSink;
use crate::clock::Now;
use crate::fanout::SessionRegistry;

/// Jobs queued before requests are refused OVERLOADED.
const QUEUE_LEN: usize = 16_384;
/// Most jobs served between two looks at the timers: the loop's work budget.
const MAX_BATCH: usize = 512;
/// The longest sleep when nothing is due.
const IDLE: Duration = Duration::from_secs(1);

/// A call record for the conversation's shard.
#[derive(Debug, Clone)]
pub struct RecordPost {
    /// The organisation.
    pub org: OrgId,
    /// The conversation.
    pub conversation: u64,
    /// The starter, who authors it.
    pub starter: UserId,
    /// The record.
    pub record: herald_protocol::pb::CallRecord,
}

#[derive(Debug)]
enum Job {
    Request { caller: Caller, request: Box<CallRequest>, request_id: RequestId, done: oneshot::Sender<Frame> },
    Admission { caller: Caller, call: CallId, done: oneshot::Sender<Admission> },
    Disconnected { org: OrgId, endpoint: Endpoint },
}

/// The call loop's handle. Dropping it stops the loop after what is queued.
#[derive(Debug)]
pub struct Calls {
    inbox: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Call records, until the server takes them to forward to the shards.
    records: Mutex<Option<mpsc::UnboundedReceiver<RecordPost>>>,
}

/// The loop is too busy or has stopped: the caller answers OVERLOADED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallsBusy;

impl Calls {
    /// Starts the loop; call records come out of [`Calls::take_records`].
    ///
    /// # Errors
    /// The I/O error if the thread cannot be spawned.
    pub fn start(
        config: &CallsConfig,
        orgs: Arc<OrgTable>,
        registry: Arc<SessionRegistry>,
        audit: Arc<dyn AuditSink>,
    ) -> std::io::Result<Self> {
        let (inbox, jobs) = sync_channel(QUEUE_LEN);
        let (records, records_rx) = mpsc::unbounded_channel();
        let media_server = config.media_server_user.as_deref().and_then(|u| UserId::new(u).ok());
        let state = Loop { table: CallTable::new(config.limits(), media_server), orgs, registry, audit, records };
        let thread = std::thread::Builder::new().name("herald-calls".into()).spawn(move || state.run(&jobs))?;
        Ok(Self { inbox: Some(inbox), thread: Some(thread), records: Mutex::new(Some(records_rx)) })
    }

    /// The ended calls' records, once: whoever takes them sequences them into conversations.
    pub fn take_records(&self) -> Option<mpsc::UnboundedReceiver<RecordPost>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Queues a request; the answer frame comes back on the receiver.
    ///
    /// # Errors
    /// [`CallsBusy`] when the queue is full or the loop stopped.
    pub fn submit(
        &self,
        caller: Caller,
        request: CallRequest,
        request_id: RequestId,
    ) -> Result<oneshot::Receiver<Frame>, CallsBusy> {
        let (done, answer) = oneshot::channel();
        self.send(Job::Request { caller, request: Box::new(request), request_id, done })?;
        Ok(answer)
    }

    /// Asks who may join call `call` (see [`CallTable::admission`]).
    ///
    /// # Errors
    /// [`CallsBusy`] when the queue is full or the loop stopped.
    pub fn admission(&self, caller: Caller, call: CallId) -> Result<oneshot::Receiver<Admission>, CallsBusy> {
        let (done, answer) = oneshot::channel();
        self.send(Job::Admission { caller, call, done })?;
        Ok(answer)
    }

    /// A device's session closed: its calls keep its slot for the rejoin grace.
    pub fn disconnected(&self, org: OrgId, endpoint: Endpoint) {
        if self.send(Job::Disconnected { org, endpoint }).is_err() {
            warn!("call loop busy: a disconnect was dropped; the device's slot ends with the call");
        }
    }

    fn send(&self, job: Job) -> Result<(), CallsBusy> {
        let Some(inbox) = self.inbox.as_ref() else { return Err(CallsBusy) };
        inbox.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => CallsBusy,
        })
    }
}

impl Drop for Calls {
    fn drop(&mut self) {
        self.inbox.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Loop {
    table: CallTable,
    orgs: Arc<OrgTable>,
    registry: Arc<SessionRegistry>,
    audit: Arc<dyn AuditSink>,
    records: mpsc::UnboundedSender<RecordPost>,
}

impl Loop {
    fn run(mut self, jobs: &Receiver<Job>) {
        loop {
            let now_ms = Now::system().unix_ms;
            let wait = self.table.next_deadline().map_or(IDLE, |d| Duration::from_millis(d.saturating_sub(now_ms)));
            match jobs.recv_timeout(wait.min(IDLE)) {
                Ok(job) => {
                    self.serve(job);
                    for job in jobs.try_iter().take(MAX_BATCH - 1) {
                        self.serve(job);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.table.tick(Now::system().unix_ms);
            self.perform();
        }
    }

    fn serve(&mut self, job: Job) {
        let now_ms = Now::system().unix_ms;
        match job {
            Job::Request { caller, request, request_id, done } => {
                let capacity = self.orgs.policy(&caller.org).unwrap_or_default().max_call_participants;
                let answer = match self.table.serve(now_ms, &caller, *request, capacity, rand::random()) {
                    Ok(body) => body.into_frame(request_id),
                    Err(e) => Frame::error(request_id, e.code(), e.to_string()),
                };
                let _ = done.send(answer);
            }
            Job::Admission { caller, call, done } => {
                let _ = done.send(self.table.admission(&caller, call));
            }
            Job::Disconnected { org, endpoint } => self.table.disconnected(now_ms, &org, &endpoint),
        }
        // Pushes go out as each request is served, so a ring or relay never waits for a batch.
        self.perform();
    }

    fn perform(&mut self) {
        for out in self.table.take_outs() {
            match out {
                Out::Push { org, target, lane, frame } => match target {
                    Target::Devices(devices) => {
                        self.registry.send_to_devices(&org, devices.iter().map(|e| (&e.user, &e.device)), &frame, lane);
                    }
                    Target::User { user, except } => {
                        self.registry.send_to_user_except(&org, &user, except.as_ref(), &frame, lane);
                    }
                },
                Out::Audit(event) => self.audit.record(event),
                Out::Record { org, conversation, starter, record } => {
                    let _ = self.records.send(RecordPost { org, conversation, starter, record });
                }
            }
        }
    }
}
