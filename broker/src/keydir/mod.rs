//! End-to-end encryption's broker side (docs/PROTOCOL.md §19): the key directory and the
//! devices' mailboxes.
//!
//! The broker never holds a secret key and never reads a message: it stores each device's
//! signed key bundle (checking the signature and that the bundle names the device publishing
//! it, so one device cannot publish keys for another), tells the people who share a
//! conversation with a user when one of the user's devices publishes new keys, and keeps sealed
//! envelopes (sender keys for a conversation, §18.5) in the recipient device's mailbox until
//! that device acknowledges them. Clients verify everything they fetch; what a broker lying
//! about keys could do is set out in docs/SECURITY.md.
//!
//! Requests are parsed ([`parse`]) into [`KeysRequest`]s and served on the blocking pool
//! (`dispatch`); each touches only the caller's own records or adds envelopes under fresh,
//! unique keys, so no request needs an owner thread to serialise it.

mod dispatch;
mod error;
mod ids;
mod request;
mod serve;

#[cfg(test)]
mod tests;

pub(crate) use dispatch::dispatch;
pub use error::KeysError;
pub use ids::EnvelopeIds;
pub use request::{KeysRequest, OutgoingEnvelope, parse};
pub use serve::{Answer, KeyDirectory};
