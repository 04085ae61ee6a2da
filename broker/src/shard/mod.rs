//! Shards: each conversation belongs to one shard (by hash), and a shard is one thread that owns
//! its conversations' state outright. No locks guard conversation state: only its shard's
//! thread ever touches it.

mod check;
mod command;
#[cfg(test)]
mod ding_tests;
mod fuzz;
#[cfg(test)]
mod fuzz_tests;
mod live;
mod machine;
mod membership_chain;
#[cfg(test)]
mod membership_chain_tests;
#[cfg(test)]
mod message_state_tests;
mod policy;
mod recall;
mod receipts;
mod runner;
mod send;
#[cfg(test)]
mod simulation;
mod timers;

mod ding;
pub use command::{Command, Origin, PriorSend, Request, SendOptions};
pub use ding::{DingRules, DingSpec, GatewayCall};
pub use fuzz::fuzz_commands;
pub use live::{EntryInfo, EntryKind};
pub use machine::{Effects, Fanout, HistoryRead, ShardLimits, ShardMachine};
pub use membership_chain::ChainRead;
pub use policy::{OrgPolicy, Policies};
pub use runner::{ShardConfig, Shards};
