//! Client sessions: a sans-IO state machine per connection ([`SessionMachine`]) and the thin
//! async loop that feeds it from a QUIC connection (`connection`).

mod connection;
mod context;
mod denials;
mod directory;
mod fuzz;
mod machine;
mod push_writer;
mod requests;
mod services;

pub(crate) use connection::serve_connection;
pub use context::SessionContext;
pub use fuzz::fuzz_session_frames;
pub use machine::{Action, SessionMachine};
pub use requests::Routed;
pub use services::Services;
