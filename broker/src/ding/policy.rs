//! Escalation policies: the ladders operators define, checked once at start.

use std::collections::HashMap;
use std::time::Duration;

use herald_protocol::pb;
use serde::Deserialize;

use super::gateway::Channel as GatewayChannel;

/// Where a step reaches the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// DING_NOTICE on the recipient's urgent stream.
    App,
    /// A text message through the gateway.
    Sms,
    /// A voice call through the gateway.
    Voice,
    /// DING_NOTICE to the recipient's manager.
    Manager,
}

impl Channel {
    /// The wire form.
    pub fn to_pb(self) -> pb::DingChannel {
        match self {
            Channel::App => pb::DingChannel::App,
            Channel::Sms => pb::DingChannel::Sms,
            Channel::Voice => pb::DingChannel::Voice,
            Channel::Manager => pb::DingChannel::Manager,
        }
    }

    /// The channel of a wire value.
    pub fn from_pb(raw: i32) -> Option<Channel> {
        match pb::DingChannel::try_from(raw).ok()? {
            pb::DingChannel::App => Some(Channel::App),
            pb::DingChannel::Sms => Some(Channel::Sms),
            pb::DingChannel::Voice => Some(Channel::Voice),
            pb::DingChannel::Manager => Some(Channel::Manager),
            pb::DingChannel::Unspecified => None,
        }
    }

    /// Whether the step goes through the SMS/voice gateway.
    pub fn uses_gateway(self) -> bool {
        self.gateway().is_some()
    }

    /// The gateway's channel for an SMS or voice step.
    pub fn gateway(self) -> Option<GatewayChannel> {
        match self {
            Channel::Sms => Some(GatewayChannel::Sms),
            Channel::Voice => Some(GatewayChannel::Voice),
            Channel::App | Channel::Manager => None,
        }
    }

    /// The name in configuration, metrics and audit details.
    pub fn name(self) -> &'static str {
        match self {
            Channel::App => "app",
            Channel::Sms => "sms",
            Channel::Voice => "voice",
            Channel::Manager => "manager",
        }
    }
}

/// One rung, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Where it reaches the recipient.
    pub channel: Channel,
    /// Delay from the DING's creation.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
}

/// A ladder as configured under `[ding.policies.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The steps, in order of their delays.
    pub steps: Vec<StepConfig>,
    /// Reading the message (a MARK past it) acknowledges, as well as DING_ACK.
    #[serde(default)]
    pub ack_on_read: bool,
    /// How long after the DING's creation unacknowledged recipients expire; at least the last
    /// step's delay. Default: the last step's delay plus one hour.
    #[serde(default, with = "humantime_serde")]
    pub expire_after: Option<Duration>,
}

/// Why a policy is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No steps at all.
    #[error("policy {0}: it has no steps")]
    Empty(String),
    /// A step's delay is shorter than the one before it.
    #[error("policy {name}: step {step} comes before step {previous} (delays must not decrease)")]
    Unordered {
        /// The policy.
        name: String,
        /// The offending step (0-based).
        step: usize,
        /// The step before it.
        previous: usize,
    },
    /// The expiry comes before the last step.
    #[error("policy {0}: expire_after is shorter than the last step's delay")]
    ExpiresEarly(String),
    /// More steps than a DING tracks.
    #[error("policy {0}: at most {MAX_STEPS} steps")]
    TooManySteps(String),
}

/// Most steps in one ladder.
const MAX_STEPS: usize = 16;

/// A checked ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its name.
    pub name: String,
    /// (channel, delay from creation in ms), delays never decreasing.
    pub steps: Vec<(Channel, u64)>,
    /// Reading acknowledges.
    pub ack_on_read: bool,
    /// When unacknowledged recipients expire, ms after creation.
    pub expire_after_ms: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Policy {
    /// Checks a configured ladder.
    ///
    /// # Errors
    /// [`PolicyError`] naming the policy and what is wrong.
    pub fn from_config(name: &str, config: &PolicyConfig) -> Result<Policy, PolicyError> {
        if config.steps.is_empty() {
            return Err(PolicyError::Empty(name.to_owned()));
        }
        if config.steps.len() > MAX_STEPS {
            return Err(PolicyError::TooManySteps(name.to_owned()));
        }
        for (step, pair) in config.steps.windows(2).enumerate() {
            if let [before, after] = pair
                && after.after < before.after
            {
                return Err(PolicyError::Unordered { name: name.to_owned(), step: step + 1, previous: step });
            }
        }
        let last = config.steps.last().map_or(0, |s| millis(s.after));
        let expire_after_ms = config.expire_after.map_or(last.saturating_add(60 * 60 * 1000), millis);
        if expire_after_ms < last {
            return Err(PolicyError::ExpiresEarly(name.to_owned()));
        }
        let steps = config.steps.iter().map(|s| (s.channel, millis(s.after))).collect();
        Ok(Policy { name: name.to_owned(), steps, ack_on_read: config.ack_on_read, expire_after_ms })
    }

    /// Whether any step goes through the gateway (so the DING needs an SMS text).
    pub fn uses_gateway(&self) -> bool {
        self.steps.iter().any(|(channel, _)| channel.uses_gateway())
    }

    /// The ladder in wire form.
    pub fn to_pb(&self) -> Vec<pb::DingStep> {
        self.steps.iter().map(|(c, after)| pb::DingStep { channel: c.to_pb().into(), after_ms: *after }).collect()
    }
}

/// Every configured policy, checked.
///
/// # Errors
/// The first unusable policy.
pub fn check_policies(configured: &HashMap<String, PolicyConfig>) -> Result<HashMap<String, Policy>, PolicyError> {
    configured.iter().map(|(name, config)| Ok((name.clone(), Policy::from_config(name, config)?))).collect()
}

/// A built-in step: `channel` after `minutes`.
fn step(channel: Channel, minutes: u64) -> StepConfig {
    StepConfig { channel, after: Duration::from_secs(minutes * 60) }
}

/// The built-in ladder of an unconfigured broker: in-app now, SMS after 5 minutes, voice after
/// 15, the manager after 30.
pub fn standard_policy() -> PolicyConfig {
    PolicyConfig {
        steps: vec![step(Channel::App, 0), step(Channel::Sms, 5), step(Channel::Voice, 15), step(Channel::Manager, 30)],
        ack_on_read: false,
        expire_after: None,
    }
}

/// The built-in in-app ladder, for brokers without an SMS/voice gateway: in-app now, again after
/// 2 and 10 minutes (Teams-style repeats), then the manager after 30.
pub fn app_policy() -> PolicyConfig {
    PolicyConfig {
        steps: vec![step(Channel::App, 0), step(Channel::App, 2), step(Channel::App, 10), step(Channel::Manager, 30)],
        ack_on_read: false,
        expire_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(delays_s: &[u64]) -> PolicyConfig {
        let steps =
            delays_s.iter().map(|s| StepConfig { channel: Channel::App, after: Duration::from_secs(*s) }).collect();
        PolicyConfig { steps, ack_on_read: false, expire_after: None }
    }

    #[test]
    fn ladders_must_have_steps_in_order() {
        assert_eq!(Policy::from_config("p", &config(&[])), Err(PolicyError::Empty("p".into())));
        let unordered = Policy::from_config("p", &config(&[0, 300, 60]));
        assert_eq!(unordered, Err(PolicyError::Unordered { name: "p".into(), step: 2, previous: 1 }));
        let policy = Policy::from_config("p", &config(&[0, 60, 60])).expect("equal delays are fine");
        assert_eq!(policy.expire_after_ms, 60_000 + 3_600_000);
        let early = PolicyConfig { expire_after: Some(Duration::from_secs(10)), ..config(&[0, 60]) };
        assert_eq!(Policy::from_config("p", &early), Err(PolicyError::ExpiresEarly("p".into())));
        let standard = Policy::from_config("standard", &standard_policy()).expect("valid");
        assert!(standard.uses_gateway());
    }
}
