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
//! Messaging: [`Client::create_group`], [`Client::send`] (resolves once durable), the pushed
//! [`Event`]s from [`Client::events`], [`Client::history`] and [`Client::sync`] for catching up.
//! Receipts: [`Client::mark_read`] and [`Client::mark_delivered`] move this device's cursors,
//! [`Client::receipts`] and [`Client::receipt_list`] say who has read a message, and
//! [`Event::Receipts`] pushes the counts of your own messages as they change. Recall and expiry:
//! [`Client::recall`], [`SendOptions`] for expiring and scheduled messages
//! ([`Client::send_with_options`], [`Client::reschedule`]), [`Event::Recalled`] and
//! [`EntryKind::Tombstone`] for what is gone. Offline: the client reconnects on its own
//! ([`ClientConfig::with_reconnect`]) with backoff, sends what was queued or in flight (when safe to repeat) and resumes the event
//! stream without gaps or repeats; [`Event::Connection`] reports each change. The guide is
//! docs/SDK.md; `examples/` has a terminal chat and a DING responder.

mod admin;
mod attendance;
mod call;
mod client;
mod config;
mod cursor_store;
mod ding;
mod driver;
pub mod e2e;
mod encrypted;
mod endpoint;
mod error;
mod event;
mod keys;
mod membership_chain;
mod messaging;
mod outbox;
mod push;
mod reader;
mod recall;
mod receipts;
mod reconnect;
mod resume;
mod supervisor;
mod tls;
mod token_refresh;

pub use admin::Admin;
pub use attendance::{CSV_HEADER, CheckInRequest};
pub use call::{CallEvent, CallRoster, DeltaOutcome, HostAction};
pub use client::{Client, Limits, SessionInfo};
pub use config::{ClientConfig, TokenSource, Trust};
pub use cursor_store::{CursorStore, CursorStoreError, FileCursors, MemoryCursors};
pub use ding::{DingNotice, DingRequest};
pub use encrypted::E2eWarning;
pub use endpoint::Endpoint;
pub use error::ClientError;
pub use event::{ConnectionState, Entry, EntryKind, Event, Expiry, RecallReason};
pub use herald_protocol::pb;
pub use herald_protocol::{ErrorCode, SessionId};
pub use messaging::{
    Conversation, HistoryPage, MemberPage, Role, SendAck, SendOptions, SendOutcome, SyncState, new_client_msg_id,
};
pub use outbox::{FileOutbox, MemoryOutbox, Outbox, OutboxError, OutboxItem, Resent};
pub use recall::{RecallNotice, Scheduled};
pub use receipts::{Cursors, MessageReceipts, RecallProgress, ReceiptList, ReceiptPage, Receipts};
pub use reconnect::ReconnectPolicy;
