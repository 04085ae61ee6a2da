//! Shards: each conversation belongs to one shard (by hash), and a shard is one thread that owns
//! its conversations' state outright. No locks guard conversation state: only its shard's
//! thread ever touches it.

mod command;
mod machine;
mod runner;

pub use command::{Command, Origin, PriorSend, Request};
pub use machine::{Effects, Fanout, HistoryRead, ShardLimits, ShardMachine};
pub use runner::{ShardConfig, Shards};
