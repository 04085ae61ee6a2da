//! Rate limits: token buckets per session, per user and per organisation, for each class of
//! request (sends, payload bytes, group creations, other requests).
//!
//! A session checks every request against its [`SessionLimiter`] before dispatching it; a refusal
//! is answered with RATE_LIMITED and a retry-after hint, has no effect, and leaves the connection
//! open. The buckets are sans-IO: the time is passed in, nothing here reads a clock or blocks
//! for longer than a few integer operations under a per-user or per-organisation mutex.

mod bucket;
mod class;
mod limiter;

pub use bucket::{Denied, Take, TokenBucket, take_all};
pub use class::{Class, Demand, Scope};
pub use limiter::{Limited, RateLimiter, SessionLimiter};
