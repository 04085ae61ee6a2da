//! DING: urgent notices that escalate from the app to SMS to a voice call to the recipient's
//! manager until each recipient acknowledges.
//!
//! The ladder of one DING is a pure state machine ([`Ding`]); policies are checked once at start
//! ([`Policy`]); the conversation's shard drives both on its durable timers
//! (`crate::shard`), and SMS and voice go out through the operator's gateway ([`gateway`]).

pub mod backoff;
pub mod gateway;
mod ladder;
mod policy;
mod records;

pub use backoff::Backoff;
pub use gateway::{
    Channel as GatewayChannel, DeliverFuture, Gateway, GatewayConfig, GatewayError, GatewayOutcome, GatewayRequest,
    NoGateway, WebhookGateway, gateway_from_config,
};
pub use ladder::{Contact, Counts, Ding, LadderError, Line, LineState, Outreach, StepResult};
pub use policy::{Channel, Policy, PolicyConfig, PolicyError, StepConfig, app_policy, check_policies, standard_policy};
pub use records::{decode, encode_header, encode_line};
