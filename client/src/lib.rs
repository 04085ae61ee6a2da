//! The Herald SDK: an async client for the Herald messaging broker.
//!
//! A [`Client`] is one authenticated session over QUIC: it opens the control stream, sends
//! HELLO with your token, and then carries requests and their answers. It is cheap to clone and
//! safe to share between tasks. This crate also builds the `herald` command-line tool.
//!
//! ```no_run
//! use herald_client::{Client, ClientConfig, Trust};
//!
//! # async fn example() -> Result<(), herald_client::ClientError> {
//! let trust = Trust::pem_file("herald-data/tls/cert.pem".as_ref())?;
//! let config = ClientConfig::new("127.0.0.1:7443".parse().expect("address"), "<token>")
//!     .with_trust(trust)
//!     .with_device_id("laptop-1");
//! let client = Client::connect(config).await?;
//! println!("session {} as {}", client.session().session_id, client.session().user);
//! println!("round trip: {:?}", client.ping().await?);
//! client.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! What it is not (yet): reconnection, offline queues and messaging arrive with the messaging
//! core; this version covers the session handshake and liveness.

mod client;
mod config;
mod driver;
mod error;
mod push;
mod reader;
mod tls;

pub use client::{Client, Limits, SessionInfo};
pub use config::{ClientConfig, Trust};
pub use error::ClientError;
pub use herald_protocol::{ErrorCode, SessionId};
