//! A simulated member's receiving side: read the event stream, count what arrives, and page the
//! log after a RESYNC as a real app would, so a slow reader shows up as a figure, not as loss.

use std::time::{Duration, Instant};

use anyhow::Result;

use herald_client::{Client, Entry, EntryKind, Event};
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinHandle;
use tokio::time::Instant as Deadline;

use crate::progress::Progress;
use crate::report::{Phase, Report};
use crate::tally::Arrivals;

/// How long a member keeps reading after its last expected message, to catch duplicates.
const LINGER: Duration = Duration::from_millis(300);

/// What one member saw.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub(crate) arrivals: Arrivals,
    /// RESYNC notices: deliveries the broker dropped for this member and it paged back.
    pub(crate) resyncs: u64,
    /// When the last expected message arrived, if all did.
    pub(crate) completed_at: Option<Instant>,
    /// This member's user and device: its own messages, which the broker also hands to the
    /// sending device, are not deliveries.
    me: (String, String),
}

impl Received {
    /// An empty tally for the session of `client`.
    pub(crate) fn of(client: &Client) -> Self {
        let session = client.session();
        Self { me: (session.user, session.device), ..Self::default() }
    }
}

/// Reads `events` until `expected` stamped messages from others have arrived or
/// `deadline` passes, then lingers briefly for duplicates.
pub(crate) async fn receive(
    client: Client,
    mut events: Receiver<Event>,
    expected: u64,
    deadline: Deadline,
    progress: Progress,
) -> Received {
    let mut seen = Received::of(&client);
    while seen.arrivals.unique < expected {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await else { return seen };
        take(event, &mut seen, &progress);
    }
    seen.completed_at = Some(Instant::now());
    while let Ok(Some(event)) = tokio::time::timeout(LINGER, events.recv()).await {
        take(event, &mut seen, &progress);
    }
    seen
}

/// Counts a delivery. A RESYNC is only counted: the SDK has already fetched what the broker
/// dropped and handed it out in order before telling.
fn take(event: Event, seen: &mut Received, progress: &Progress) {
    match event {
        Event::Delivery(entry) => note(&entry, seen, progress),
        Event::Resync { .. } => seen.resyncs += 1,
        _ => {}
    }
}

/// Fetches the log from the newest entry this member has: what a reconnecting member missed.
pub(crate) async fn page_gap(client: &Client, conversation: u64, seen: &mut Received, progress: &Progress) {
    let after = seen.arrivals.last_seq(conversation);
    let Ok(entries) = client.catch_up(conversation, after).await else { return };
    for entry in &entries {
        note(entry, seen, progress);
    }
}

/// Counts a message from someone else. The broker also hands a sender's own messages to its
/// sending device (the log is the same for every device); those are not deliveries.
fn note(entry: &Entry, seen: &mut Received, progress: &Progress) {
    if entry.sender_user == seen.me.0 && entry.sender_device == seen.me.1 {
        return;
    }
    if let EntryKind::Message { payload, .. } = &entry.kind
        && seen.arrivals.note(entry.conversation_id, entry.seq, payload)
    {
        progress.inc(1);
    }
}

/// Waits for every member's receiving task and reports what they got together: the delivery
/// phase (from `start` until the last member had everything), the check against `expected`
/// deliveries, the delivery rate and the resyncs.
pub(crate) async fn report_deliveries(
    report: &mut Report,
    members: Vec<JoinHandle<Received>>,
    start: Instant,
    expected: u64,
) -> Result<()> {
    let mut total = Received::default();
    let mut last_completion = start;
    for member in members {
        let seen = member.await?;
        total.arrivals.absorb(&seen.arrivals);
        total.resyncs += seen.resyncs;
        last_completion = last_completion.max(seen.completed_at.unwrap_or(last_completion));
    }
    let delivered_in = last_completion.duration_since(start);
    report.phases.push(Phase::new("delivery", 0, delivered_in, &total.arrivals.latencies()));
    report.checks.push(total.arrivals.check("deliveries", expected));
    let rate = total.arrivals.unique as f64 / delivered_in.as_secs_f64().max(1e-9);
    report.figures.insert("deliveries_per_second", rate);
    report.figures.insert("resyncs", total.resyncs as f64);
    Ok(())
}
