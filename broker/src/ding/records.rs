//! The stored form of a DING: one header record and one line per recipient, so an
//! acknowledgement rewrites a few bytes, not the whole DING of 5000 recipients.

use bytes::Bytes;
use herald_protocol::UserId;
use prost::Message;

use super::ladder::{Ding, Line, LineState, StepResult};
use super::policy::{Channel, Policy};

#[derive(Clone, PartialEq, Message)]
struct StepRecord {
    #[prost(int32, tag = "1")]
    channel: i32,
    #[prost(uint64, tag = "2")]
    after_ms: u64,
}

#[derive(Clone, PartialEq, Message)]
struct HeaderRecord {
    #[prost(string, tag = "1")]
    sender: String,
    #[prost(uint64, tag = "2")]
    seq: u64,
    #[prost(bytes = "vec", tag = "3")]
    payload: Vec<u8>,
    #[prost(string, tag = "4")]
    sms_text: String,
    #[prost(string, tag = "5")]
    policy: String,
    #[prost(message, repeated, tag = "6")]
    steps: Vec<StepRecord>,
    #[prost(bool, tag = "7")]
    ack_on_read: bool,
    #[prost(uint64, tag = "8")]
    expire_after_ms: u64,
    #[prost(uint64, tag = "9")]
    created_at_ms: u64,
    #[prost(uint64, tag = "10")]
    redone_at_ms: u64,
}

#[derive(Clone, PartialEq, Message)]
struct ResultRecord {
    #[prost(uint32, tag = "1")]
    step: u32,
    #[prost(int32, tag = "2")]
    channel: i32,
    #[prost(uint64, tag = "3")]
    at_ms: u64,
    #[prost(bool, tag = "4")]
    delivered: bool,
    #[prost(string, tag = "5")]
    detail: String,
}

#[derive(Clone, PartialEq, Message)]
struct LineRecord {
    /// 1 pending, 2 acknowledged, 3 expired, 4 cancelled.
    #[prost(uint32, tag = "1")]
    state: u32,
    #[prost(uint64, tag = "2")]
    settled_at_ms: u64,
    /// The highest step fired plus one; 0 when none.
    #[prost(uint32, tag = "3")]
    fired_plus_one: u32,
    #[prost(message, repeated, tag = "4")]
    results: Vec<ResultRecord>,
}

/// The header of `ding` (everything but its lines).
pub fn encode_header(ding: &Ding) -> Vec<u8> {
    HeaderRecord {
        sender: ding.sender.to_string(),
        seq: ding.seq,
        payload: ding.payload.to_vec(),
        sms_text: ding.sms_text.clone(),
        policy: ding.policy.name.clone(),
        steps: ding
            .policy
            .steps
            .iter()
            .map(|(c, after)| StepRecord { channel: c.to_pb().into(), after_ms: *after })
            .collect(),
        ack_on_read: ding.policy.ack_on_read,
        expire_after_ms: ding.policy.expire_after_ms,
        created_at_ms: ding.created_at_ms,
        redone_at_ms: ding.redone_at_ms,
    }
    .encode_to_vec()
}

/// One recipient's line.
pub fn encode_line(line: &Line) -> Vec<u8> {
    let (state, settled_at_ms) = match line.state {
        LineState::Pending => (1, 0),
        LineState::Acknowledged(at) => (2, at),
        LineState::Expired(at) => (3, at),
        LineState::Cancelled(at) => (4, at),
    };
    LineRecord {
        state,
        settled_at_ms,
        fired_plus_one: line.fired.map_or(0, |f| f + 1),
        results: line
            .results
            .iter()
            .map(|r| ResultRecord {
                step: r.step,
                channel: r.channel.to_pb().into(),
                at_ms: r.at_ms,
                delivered: r.delivered,
                detail: r.detail.clone(),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// A DING from its stored header and lines.
///
/// # Errors
/// What does not decode.
pub fn decode(id: u64, header: &[u8], lines: Vec<(UserId, Vec<u8>)>) -> Result<Ding, String> {
    let h = HeaderRecord::decode(header).map_err(|e| e.to_string())?;
    let steps = h
        .steps
        .iter()
        .map(|s| Channel::from_pb(s.channel).map(|c| (c, s.after_ms)).ok_or("unknown channel"))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = Policy { name: h.policy, steps, ack_on_read: h.ack_on_read, expire_after_ms: h.expire_after_ms };
    let sender = UserId::new(h.sender).map_err(|e| e.to_string())?;
    let mut ding =
        Ding::new(id, sender, (h.seq, Bytes::from(h.payload), h.sms_text), policy, std::iter::empty(), h.created_at_ms);
    ding.redone_at_ms = h.redone_at_ms;
    for (user, bytes) in lines {
        ding.insert_line(user, decode_line(&bytes)?);
    }
    Ok(ding)
}

fn decode_line(bytes: &[u8]) -> Result<Line, String> {
    let r = LineRecord::decode(bytes).map_err(|e| e.to_string())?;
    let state = match r.state {
        1 => LineState::Pending,
        2 => LineState::Acknowledged(r.settled_at_ms),
        3 => LineState::Expired(r.settled_at_ms),
        4 => LineState::Cancelled(r.settled_at_ms),
        other => return Err(format!("unknown line state {other}")),
    };
    let results = r
        .results
        .into_iter()
        .map(|x| {
            let channel = Channel::from_pb(x.channel).ok_or("unknown channel")?;
            Ok(StepResult { step: x.step, channel, at_ms: x.at_ms, delivered: x.delivered, detail: x.detail })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Line { state, fired: r.fired_plus_one.checked_sub(1), results })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ding::ladder::Contact;
    use crate::ding::policy::standard_policy;

    #[test]
    fn a_ding_survives_the_round_trip_through_its_records() {
        let policy = Policy::from_config("standard", &standard_policy()).expect("valid");
        let users = ["alice", "bob"].map(|u| UserId::new(u).expect("valid"));
        let content = (0, Bytes::from_static(b"sealed"), "call in".to_owned());
        let mut ding = Ding::new(9, UserId::new("boss").expect("valid"), content, policy, users.clone(), 1000);
        let phone = |_: &UserId| Contact { phone: Some("+8613800138000".into()), manager: None };
        ding.fire(0, 1000, phone);
        ding.fire(1, 2000, phone);
        ding.acknowledge(&users[0], 3000).expect("recipient");
        ding.redone_at_ms = 4000;
        let lines = ding.lines().iter().map(|(u, l)| (u.clone(), encode_line(l))).collect();
        assert_eq!(decode(9, &encode_header(&ding), lines), Ok(ding));
    }
}
