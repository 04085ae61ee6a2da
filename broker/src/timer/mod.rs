//! Durable timers: what a shard must do at a given time, whoever is online then.
//!
//! One engine per shard serves message expiry (an explicit time, a time after everyone read
//! it, or the conversation's retention) and scheduled sends; later DING steps and ring
//! timeouts join it. Timers are stored in the log store and loaded when the broker starts. A
//! timer fires in the same atomic batch that deletes it, so across any crash it has either
//! fired (its effects and its deletion are both durable) or not (neither is): never twice,
//! never lost.

mod durable;
mod queue;

pub use durable::{ScheduledMessage, Timer, TimerId, TimerKind, TimerWhat};
pub use queue::TimerQueue;
