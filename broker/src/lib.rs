//! The Herald broker: QUIC sessions, authentication and storage for the Herald messaging system.
//!
//! This crate is the `herald-broker` binary's library half, so tests and embedders can start a
//! real broker in-process:
//!
//! ```no_run
//! # async fn example() -> Result<(), herald_broker::BrokerError> {
//! let config = herald_broker::Config {
//!     listen: "127.0.0.1:0".parse().expect("valid address"),
//!     data_dir: "/tmp/herald-example".into(),
//!     ..Default::default()
//! };
//! let broker = herald_broker::RunningBroker::start(config).await?;
//! println!("listening on {}", broker.local_addr());
//! broker.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Layout: `session` holds the per-connection protocol state machine (sans-IO) and its thin
//! QUIC loop; `auth` checks tokens; `store` is the only module that touches RocksDB; `server`
//! wires them together. See docs/ARCHITECTURE.md.

// Without RocksDB the library is built only for the fuzz targets (see fuzz/): the serving code
// that only `server` reaches is still compiled, so it stays checked, but nothing calls it.
#![cfg_attr(not(feature = "rocksdb"), allow(dead_code, unused_imports))]

pub mod admin;
pub mod attendance;
pub mod audit;
pub mod auth;
pub mod call;
pub mod clock;
pub mod config;
pub mod connlimit;
pub mod conversation;
pub mod ding;
pub mod fanout;
mod fs;
pub mod keydir;
pub mod observe;
pub mod ratelimit;
pub mod receipts;
pub mod reload;
#[cfg(feature = "rocksdb")]
mod server;
pub mod session;
pub mod shard;
pub mod store;
pub mod timer;
pub mod tls;

pub use config::Config;
#[cfg(feature = "rocksdb")]
pub use server::{BrokerError, RunningBroker};
