//! Read and delivered receipts, sans-IO: one [`ReceiptBook`] per conversation, owned by its shard.
//!
//! ```
//! use herald_broker::receipts::{Counts, ReceiptBook};
//! use herald_protocol::{DeviceId, UserId};
//!
//! let (alice, bob) = (UserId::new("alice").expect("valid"), UserId::new("bob").expect("valid"));
//! let phone = DeviceId::new("phone").expect("valid");
//! let mut book = ReceiptBook::new(1000);
//! book.join(&alice, 1).expect("new member");
//! book.join(&bob, 2).expect("new member");
//! // Messages 3 and 4 are sequenced; bob's phone has received both and he has read 3.
//! let marked = book.mark(&bob, &phone, 4, 3, 4).expect("valid cursors");
//! assert_eq!(marked.read_moved, Some((1, 3)));
//! assert_eq!(book.counts(3), Counts { read: 1, delivered: 1, members: 2 });
//! assert_eq!(book.counts(4), Counts { read: 0, delivered: 1, members: 2 });
//! ```
//!
//! # Cursors, not per-message flags
//!
//! Reading is a cursor: a device reports "delivered up to seq D" and "read up to seq R", and the
//! book keeps one read and one delivered cursor per member (the furthest of their devices) and
//! one delivered cursor per device. A 5000-member group that reads a message costs 5000 cursor
//! moves, not 5000 rows per message, and storage holds one small record per member and device
//! whatever the history's length. A message at seq S counts as read by every member, of those
//! who were members when it was sent, whose read cursor is at least S.
//!
//! # Exact counts in O(log n)
//!
//! Seqs start at 1 and every membership change is a log entry with its own seq. Each member
//! (current or departed) has a record `J` (joined), `L` (left, if departed), `R` (read) and `D`
//! (delivered). The book keeps, for every record:
//!
//! 1. `J - 1 <= R <= D`: a join starts both cursors at `J - 1`, and they only move forward. A
//!    rejoin replaces the record, so receipts of an earlier membership are forgotten.
//! 2. `D < L`: a member cannot have seen the entry that removed them (leave refuses otherwise,
//!    and departed members cannot mark).
//!
//! So for the message at S, "was a member at S" is `J <= S < L`, and `R >= S` already implies
//! `S < L` (by 2), while `J > S` already implies `R >= S` (by 1). Counting over all records:
//!
//! - `members(S)   = #{J <= S} - #{L <= S}` (every record with `L <= S` also has `J <= S`);
//! - `read(S)      = #{R >= S} - #{J > S}`;
//! - `delivered(S) = #{D >= S} - #{J > S}`;
//! - `applied_devices(E) = #{device cursor >= E}` over the current members' devices.
//!
//! Each `#{...}` is one [`WindowedCounter`] query, so each count is a handful of O(log n) steps.
//!
//! # The window
//!
//! A counter answers only inside its window (`2 × horizon` seqs); below it, the book scans its
//! records, O(n), for the same exact answer. All five counters share one window. When a change
//! would put a value past its end, the book moves the window so the newest `horizon` seqs stay
//! inside and rebuilds every counter from the records, O(horizon + n), at most once per
//! `horizon` seqs of progress. Live receipt updates cover the newest `horizon` messages
//! (protocol: the receipt horizon), so the scan serves only explicit queries for older ones.

mod book;
mod counter;

pub use book::{
    Counts, DeviceCounts, Left, ListKind, MAX_HORIZON, MarkError, Marked, MemberCursor, MembershipError, Page,
    ReceiptBook,
};
pub use counter::WindowedCounter;
