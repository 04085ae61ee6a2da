//! Call signaling: meeting rooms of up to 1000 participants (docs/PROTOCOL.md §17).
//!
//! Herald carries no media. A call lets its participants' devices find each other and the
//! deployment's media server (SFU): it rings invitees, keeps the participant list, enforces the
//! host's controls and relays opaque SDP/ICE blobs it never parses.
//!
//! [`Call`] is one call as a sans-IO state machine: requests in with the time passed as `now_ms`,
//! [`Effect`]s out, [`Call::next_deadline`] and [`Call::handle_timeout`] for ring timeouts,
//! rejoin grace and the empty-call timeout, and [`Call::poll_delta`] for the participant list's
//! coalesced, versioned deltas. A refused request returns a [`CallError`] and leaves the call
//! exactly as it was. [`Roster`] is the participant list with its version and pending delta.
//!
//! [`CallTable`] holds every call of the broker and turns effects into pushes, audit events and
//! call records; one thread, the call loop ([`Calls`]), owns it, so no call state is behind a
//! lock. Sessions parse call frames (`parse`) and hand them to the loop (`dispatch`).

mod config;
mod dispatch;
mod error;
mod machine;
mod participant;
mod ring;
mod roster;
mod service;
mod table;
mod wire;

#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod tests;

pub use config::{CallLimits, CallsConfig};
pub(crate) use dispatch::{dispatch, forward_records};
pub use error::CallError;
pub use machine::{
    Call, CallId, CallInfo, CallStart, CallState, Effect, EndReason, LeaveReason, RelayTarget, ShareAction,
};
pub use participant::{Endpoint, Participant, ParticipantView, Presence, Role};
pub use ring::{Invite, InviteState, RingEnd};
pub use roster::{Change, Delta, Roster, SnapshotPage};
pub use service::{Calls, CallsBusy, RecordPost};
pub use table::{Admission, CallTable, Caller, Out, Target};
pub(crate) use wire::parse;
pub use wire::{CallRequest, Control};
