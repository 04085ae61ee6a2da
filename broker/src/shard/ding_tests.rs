//! DING through the shard machine with the clock driven by the test: the ladder fires in order at
//! its times, acknowledgement at any stage stops the rest, the manager step reaches the right
//! manager, gateway failures move on, and reading acknowledges when the policy says so.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use herald_protocol::{Body, ErrorCode, FrameType, OrgId, pb};

use super::ding::{DingRules, DingSpec};
use super::message_state_tests::{Shard, answer, code, pushed, user};
use super::{Effects, Request};
use crate::conversation::ConversationId;
use crate::ding::{Channel, Contact, Policy, PolicyConfig, StepConfig, standard_policy};
use crate::fanout::Lane;
use crate::timer::TimerWhat;

const GROUP: ConversationId = ConversationId::new(42);
const MIN: u64 = 60_000;

fn rules() -> Arc<DingRules> {
    let standard = Policy::from_config("standard", &standard_policy()).expect("valid");
    let step = |channel, minutes: u64| StepConfig { channel, after: std::time::Duration::from_secs(minutes * 60) };
    let quiet = PolicyConfig {
        steps: vec![step(Channel::App, 0), step(Channel::Manager, 10)],
        ack_on_read: true,
        expire_after: None,
    };
    let quiet = Policy::from_config("quiet", &quiet).expect("valid");
    let policies = HashMap::from([("standard".to_owned(), standard), ("quiet".to_owned(), quiet)]);
    Arc::new(DingRules {
        policies,
        default_policy: "standard".into(),
        org_defaults: HashMap::new(),
        min_redo_ms: 5 * MIN,
    })
}

impl Shard {
    fn with_dings(members: &[&str]) -> Self {
        let mut shard = Shard::new(members);
        shard.machine.set_ding_rules(rules());
        shard
    }

    /// Provides the directory (everyone's manager is `boss`, everyone has a phone), then ticks.
    fn tick_with_directory(&mut self, ms: u64) -> Effects {
        self.now += ms;
        let due = self.machine.due_timers(self.now);
        for (org, who) in self.machine.contacts_needed(&due) {
            self.machine.provide_contact(org, who, directory_entry());
        }
        self.machine.tick(self.now);
        self.machine.take_effects()
    }

    /// The gateway's answer to `call`, with the recipient's directory entry provided first, as the
    /// shard's loop does.
    fn gateway_answered(&mut self, call: &super::GatewayCall, outcome: Result<(), String>) -> Effects {
        self.machine.provide_contact(call.conv.org.clone(), call.user.clone(), directory_entry());
        self.machine.gateway_answered(call, outcome, self.now);
        self.machine.take_effects()
    }

    fn ding(&mut self, recipients: &[&str], policy: &str, sms_text: &str) -> Effects {
        let spec = DingSpec {
            ding_id: 77,
            seq: 1,
            payload: Bytes::new(),
            recipients: recipients.iter().map(|r| user(r)).collect(),
            policy: policy.into(),
            sms_text: sms_text.into(),
        };
        self.run("alice", Request::DingSend { id: GROUP, spec })
    }
}

fn notices(effects: &Effects) -> Vec<(pb::DingNotice, Vec<String>)> {
    pushed(effects, FrameType::DING_NOTICE)
        .into_iter()
        .map(|(body, lane, to)| {
            assert_eq!(lane, Lane::Urgent, "DING notices overtake the push stream");
            let Body::DingNotice(n) = body else { panic!("DING_NOTICE") };
            (n, to.iter().map(ToString::to_string).collect())
        })
        .collect()
}

#[test]
fn the_ladder_fires_in_order_and_an_acknowledgement_stops_it_for_that_recipient() {
    let mut shard = Shard::with_dings(&["bob", "carol", "boss"]);
    let created = shard.ding(&["bob", "carol"], "", "Server down: join the bridge");
    let Body::DingCreated(created) = answer(&created) else { panic!("DING_CREATED") };
    assert_eq!((created.recipients, created.policy.as_str(), created.steps.len()), (2, "standard", 4));

    let first = shard.tick_with_directory(0);
    let to: Vec<Vec<String>> = notices(&first).into_iter().map(|(_, to)| to).collect();
    assert_eq!(to, [vec!["bob".to_owned()], vec!["carol".to_owned()]], "in-app at once");
    assert!(first.gateway.is_empty());

    let acked = shard.run("bob", Request::DingAck { id: GROUP, ding_id: 77 });
    let Body::DingState(state) = answer(&acked) else { panic!("DING_STATE") };
    assert_eq!(state.counts.map(|c| (c.acknowledged, c.pending)), Some((1, 1)));

    assert!(shard.tick_with_directory(5 * MIN - 1).gateway.is_empty(), "not before five minutes");
    let sms = shard.tick_with_directory(1);
    let calls: Vec<(String, Channel)> = sms.gateway.iter().map(|c| (c.user.to_string(), c.channel)).collect();
    assert_eq!(calls, [("carol".to_owned(), Channel::Sms)], "bob acknowledged: only carol gets the SMS");
    let update = pushed(&sms, FrameType::DING_UPDATE);
    assert!(update.is_empty(), "updates wait for the window");
    let updates = pushed(&shard.tick_with_directory(300), FrameType::DING_UPDATE);
    let [(Body::DingUpdate(update), Lane::Push, to)] = updates.as_slice() else { panic!("{updates:?}") };
    assert_eq!((to.as_slice(), update.counts.map(|c| c.acknowledged)), ([user("alice")].as_slice(), Some(1)));

    let call = sms.gateway[0].clone();
    shard.gateway_answered(&call, Ok(()));
    let voice = shard.tick_with_directory(10 * MIN);
    assert_eq!(voice.gateway.iter().map(|c| c.channel).collect::<Vec<_>>(), [Channel::Voice]);
    let manager = shard.tick_with_directory(15 * MIN);
    let escalations = notices(&manager);
    let [(notice, to)] = escalations.as_slice() else { panic!("{escalations:?}") };
    assert_eq!((to.as_slice(), notice.escalated_for_user_id.as_str()), (["boss".to_owned()].as_slice(), "carol"));
    assert_eq!(notice.channel, i32::from(pb::DingChannel::Manager));

    let expired = shard.tick_with_directory(60 * MIN);
    assert!(expired.gateway.is_empty() && notices(&expired).is_empty());
    let status = shard.run("alice", Request::DingQuery { id: GROUP, ding_id: 77, after: None, limit: 10 });
    let Body::DingState(state) = answer(&status) else { panic!("DING_STATE") };
    let lines: Vec<(String, i32, usize)> =
        state.recipients.iter().map(|r| (r.user_id.clone(), r.state, r.steps.len())).collect();
    let (acked, expired) =
        (i32::from(pb::DingRecipientState::Acknowledged), i32::from(pb::DingRecipientState::Expired));
    assert_eq!(lines, [("bob".into(), acked, 1), ("carol".into(), expired, 4)]);
    let armed = shard.machine.timers.due(u64::MAX);
    assert!(!armed.iter().any(|id| matches!(id.what, TimerWhat::Ding { .. })), "disarmed: {armed:?}");
}

#[test]
fn a_failed_sms_moves_the_recipient_on_at_once() {
    let mut shard = Shard::with_dings(&["bob"]);
    shard.ding(&["bob"], "", "call in");
    shard.tick_with_directory(0);
    let sms = shard.tick_with_directory(5 * MIN);
    let call = sms.gateway[0].clone();
    let next = shard.gateway_answered(&call, Err("HTTP 500 after 5 attempts".into()));
    assert_eq!(next.gateway.iter().map(|c| (c.channel, c.step)).collect::<Vec<_>>(), [(Channel::Voice, 2)]);
    assert!(shard.tick_with_directory(10 * MIN).gateway.is_empty(), "step 2 already went out for bob");
}

#[test]
fn bad_dings_are_refused_with_clear_codes() {
    let mut shard = Shard::with_dings(&["bob"]);
    let cases: [(&[&str], &str, &str, ErrorCode); 5] = [
        (&["mallory"], "", "x", ErrorCode::INVALID_ARGUMENT),
        (&[], "", "x", ErrorCode::INVALID_ARGUMENT),
        (&["bob"], "nonexistent", "x", ErrorCode::INVALID_ARGUMENT),
        (&["bob"], "", "", ErrorCode::INVALID_ARGUMENT),
        (&["bob"], "quiet", "no SMS in this ladder", ErrorCode::INVALID_ARGUMENT),
    ];
    for (recipients, policy, text, expected) in cases {
        assert_eq!(code(&shard.ding(recipients, policy, text)), Some(expected), "{recipients:?} {policy} {text:?}");
    }
    shard.ding(&["bob"], "quiet", "");
    assert_eq!(code(&shard.run("carol", Request::DingAck { id: GROUP, ding_id: 77 })), Some(ErrorCode::NOT_FOUND));
    assert_eq!(code(&shard.run("bob", Request::DingAck { id: GROUP, ding_id: 5 })), Some(ErrorCode::NOT_FOUND));
    let query = Request::DingQuery { id: GROUP, ding_id: 77, after: None, limit: 10 };
    assert_eq!(code(&shard.run("bob", query)), Some(ErrorCode::FORBIDDEN), "only the sender sees the list");
    let too_soon = shard.run("alice", Request::Reding { id: GROUP, ding_id: 77, new_id: 78 });
    let Body::Error(e) = answer(&too_soon) else { panic!("ERROR") };
    assert_eq!((ErrorCode::from_u32(e.code), e.retry_after_ms), (ErrorCode::RATE_LIMITED, 5 * MIN));
    shard.now += 5 * MIN;
    let again = shard.run("alice", Request::Reding { id: GROUP, ding_id: 77, new_id: 78 });
    assert!(matches!(answer(&again), Body::DingCreated(c) if c.ding_id == 78 && c.recipients == 1));
}

#[test]
fn reading_acknowledges_when_the_policy_says_so() {
    let mut shard = Shard::with_dings(&["bob"]);
    shard.ding(&["bob"], "quiet", "");
    shard.tick_with_directory(0);
    shard.read("bob", 1);
    assert!(notices(&shard.tick_with_directory(10 * MIN)).is_empty(), "bob read it: no manager escalation");
}

#[test]
fn an_organisation_default_replaces_the_brokers() {
    let mut shard = Shard::with_dings(&["bob"]);
    let mut own = (*rules()).clone();
    own.org_defaults.insert(OrgId::new("acme").expect("valid"), "quiet".into());
    shard.machine.set_ding_rules(Arc::new(own));
    let Body::DingCreated(created) = answer(&shard.ding(&["bob"], "", "")) else { panic!("DING_CREATED") };
    assert_eq!(created.policy, "quiet", "acme's default, which needs no SMS text");
}

/// Everyone's directory entry in these tests: a phone, and `boss` as manager.
fn directory_entry() -> Contact {
    Contact { phone: Some("+8613800138000".into()), manager: Some(user("boss")) }
}
