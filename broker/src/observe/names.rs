//! Every metric the broker exports: names, labels and their descriptions, in one place
//! (docs/OPERATIONS.md lists the same table).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// QUIC connections accepted.
pub const CONNECTIONS_ACCEPTED: &str = "herald_connections_accepted_total";
/// QUIC connections open now.
pub const CONNECTIONS_OPEN: &str = "herald_connections_open";
/// Connections closed at once because a connection limit was reached, by limit.
pub const CONNECTIONS_REFUSED: &str = "herald_connections_refused_total";
/// Sessions opened (HELLO accepted), by organisation.
pub const SESSIONS_OPENED: &str = "herald_sessions_opened_total";
/// Frames received from clients, by frame type.
pub const FRAMES_RECEIVED: &str = "herald_frames_received_total";
/// ERROR frames sent, by error code name.
pub const ERRORS_SENT: &str = "herald_errors_sent_total";
/// Log entries written: every sequenced message and event, and every tombstone a recall writes
/// over a message.
pub const ENTRIES_SEQUENCED: &str = "herald_entries_sequenced_total";
/// Frames queued to device sessions by fan-out, by lane (push, urgent, datagram).
pub const DELIVERIES_QUEUED: &str = "herald_deliveries_queued_total";
/// Frames dropped for slow sessions (they resync from the log), by lane.
pub const DELIVERIES_DROPPED: &str = "herald_deliveries_dropped_total";
/// Recipients per fanned-out frame.
pub const FANOUT_RECIPIENTS: &str = "herald_fanout_recipients";
/// RESYNC frames sent to sessions whose push queue overflowed.
pub const RESYNCS: &str = "herald_resyncs_total";
/// Counter: QUIC datagrams sent (second copies of urgent signals such as call rings).
pub const DATAGRAMS_SENT: &str = "herald_datagrams_sent_total";
/// Commands per shard batch (one store commit each).
pub const SHARD_BATCH_COMMANDS: &str = "herald_shard_batch_commands";
/// Commands waiting in a shard's inbox when it starts a batch (label `shard`): a shard that
/// cannot keep up shows a growing queue before senders see OVERLOADED.
pub const SHARD_INBOX_DEPTH: &str = "herald_shard_inbox_depth";
/// Time one shard loop iteration takes: serving the batch, committing it and fanning it out.
pub const SHARD_LOOP_SECONDS: &str = "herald_shard_loop_seconds";
/// Time to commit one batch to the store.
pub const STORE_COMMIT_SECONDS: &str = "herald_store_commit_seconds";
/// Batches whose commit failed (the store then refuses writes).
pub const STORE_COMMIT_FAILURES: &str = "herald_store_commit_failures_total";
/// Durable timers fired.
pub const TIMERS_FIRED: &str = "herald_timers_fired_total";
/// Audit events handed to the writer.
pub const AUDIT_EVENTS: &str = "herald_audit_events_total";
/// Audit events dropped (queue full).
pub const AUDIT_DROPPED: &str = "herald_audit_dropped_total";
/// SMS and voice gateway attempts, by outcome: `accepted` and `failed` end a delivery (a failed
/// one may have made no attempt, when its request could not be built), `retried` is an attempt
/// that failed and is tried again.
pub const DING_GATEWAY_REQUESTS: &str = "herald_ding_gateway_requests_total";

/// DING steps fired, by channel, counted per recipient reached.
pub const DING_STEPS: &str = "herald_ding_steps_total";
/// Check-ins recorded, by status (`accepted`, `flagged`).
pub const CHECK_INS: &str = "herald_check_ins_total";
/// Attendance flags raised, by code (`OUTSIDE_GEOFENCE`, `BUDDY_PUNCHING`, …).
pub const ATTENDANCE_FLAGS: &str = "herald_attendance_flags_total";
/// Jobs per attendance batch (one store write each).
pub const ATTENDANCE_BATCH_JOBS: &str = "herald_attendance_batch_jobs";
/// Label: a check-in's status.
pub const LABEL_STATUS: &str = "status";
/// Label: a DING step's channel (app, sms, voice, manager).
pub const LABEL_CHANNEL: &str = "channel";
/// Label: the shard's index.
pub const LABEL_SHARD: &str = "shard";
/// Label: the organisation.
pub const LABEL_ORG: &str = "org";
/// Label: a frame type's name.
pub const LABEL_TYPE: &str = "type";
/// Label: an error code's name.
pub const LABEL_CODE: &str = "code";
/// Label: which connection limit (`total`, `per_ip`).
pub const LABEL_LIMIT: &str = "limit";
/// Label: the fan-out lane.
pub const LABEL_LANE: &str = "lane";
/// Label: how a gateway attempt ended (`accepted`, `retried`, `failed`).
pub const LABEL_OUTCOME: &str = "outcome";

/// Registers every description, for `# HELP` lines.
pub fn describe() {
    describe_counter!(CONNECTIONS_ACCEPTED, "QUIC connections accepted");
    describe_gauge!(CONNECTIONS_OPEN, "QUIC connections open now");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed at once with OVERLOADED by a connection limit, by limit"
    );
    describe_counter!(SESSIONS_OPENED, "Sessions opened (HELLO accepted), by organisation");
    describe_counter!(FRAMES_RECEIVED, "Frames received from clients, by frame type");
    describe_counter!(ERRORS_SENT, "ERROR frames sent, by error code");
    describe_counter!(ENTRIES_SEQUENCED, "Log entries written (sequenced entries, and tombstones over recalled ones)");
    describe_counter!(DELIVERIES_QUEUED, "Frames queued to device sessions by fan-out, by lane");
    describe_counter!(DELIVERIES_DROPPED, "Frames dropped for slow sessions, which resync from the log, by lane");
    describe_histogram!(FANOUT_RECIPIENTS, "Recipients per fanned-out frame");
    describe_counter!(RESYNCS, "RESYNC frames sent to sessions whose push queue overflowed");
    describe_counter!(DATAGRAMS_SENT, "QUIC datagrams sent: second copies of urgent signals such as call rings");
    describe_histogram!(SHARD_BATCH_COMMANDS, "Commands per shard batch (one store commit each)");
    describe_counter!(DING_STEPS, "DING steps fired, by channel, per recipient reached");
    describe_gauge!(SHARD_INBOX_DEPTH, "Commands waiting in a shard's inbox when it starts a batch, by shard");
    describe_histogram!(SHARD_LOOP_SECONDS, Unit::Seconds, "Time of one shard loop iteration: serve, commit, fan out");
    describe_histogram!(STORE_COMMIT_SECONDS, Unit::Seconds, "Time to commit one shard batch to the store");
    describe_counter!(STORE_COMMIT_FAILURES, "Shard batches whose commit failed");
    describe_counter!(TIMERS_FIRED, "Durable timers fired (expiries, scheduled sends)");
    describe_counter!(AUDIT_EVENTS, "Audit events handed to the audit writer");
    describe_counter!(AUDIT_DROPPED, "Audit events dropped because the writer's queue was full");
    describe_counter!(DING_GATEWAY_REQUESTS, "SMS and voice gateway attempts, by outcome (accepted, retried, failed)");
    describe_counter!(CHECK_INS, "Check-ins recorded, by status (accepted, flagged)");
    describe_counter!(ATTENDANCE_FLAGS, "Attendance flags raised, by code");
    describe_histogram!(ATTENDANCE_BATCH_JOBS, "Jobs per attendance batch (one store write each)");
}
