//! What operators watch: Prometheus metrics and health endpoints on a separate HTTP port.
//!
//! Every metric name and label is declared in [`names`], described there for `# HELP`, and listed
//! in docs/OPERATIONS.md; code elsewhere records through those constants only. Recording costs an
//! atomic add on a pre-registered handle or a map lookup: nothing is timestamped per message
//! (a clock read costs ~50 ns on these machines), only per batch.

mod http;
pub mod names;
mod recorder;
mod shard;

pub use http::{HttpState, serve_http};
pub use recorder::prometheus;
pub use shard::ShardMetrics;
