//! One DING and its recipients: which step reaches whom, acknowledgement, cancellation and
//! expiry. Pure: time is passed in and what must be sent is returned, so the whole ladder is
//! tested by driving the clock.

use std::collections::BTreeMap;

use bytes::Bytes;
use herald_protocol::{UserId, pb};

use super::policy::{Channel, Policy};

/// Where a recipient's DING stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineState {
    /// Steps are still to come.
    Pending,
    /// Acknowledged at this time.
    Acknowledged(u64),
    /// Ran out of time at this time.
    Expired(u64),
    /// The sender cancelled it at this time.
    Cancelled(u64),
}

/// What one step did for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// The step (0-based).
    pub step: u32,
    /// Its channel.
    pub channel: Channel,
    /// When it fired.
    pub at_ms: u64,
    /// Delivered: queued to devices, or accepted by the gateway.
    pub delivered: bool,
    /// Why not, when not; empty otherwise.
    pub detail: String,
}

/// One recipient's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Where it stands.
    pub state: LineState,
    /// The highest step fired for this recipient, if any.
    pub fired: Option<u32>,
    /// What each fired step did.
    pub results: Vec<StepResult>,
}

impl Line {
    fn new() -> Self {
        Line { state: LineState::Pending, fired: None, results: Vec::new() }
    }

    fn is_pending(&self) -> bool {
        self.state == LineState::Pending
    }

    /// A gateway step has fired for this recipient and its outcome is not recorded yet: after a
    /// restart the call is made again, with the same idempotency key.
    pub fn awaiting_gateway(&self) -> Option<u32> {
        self.results.last().filter(|r| r.channel.uses_gateway() && !r.delivered && r.detail.is_empty()).map(|r| r.step)
    }
}

/// What a recipient needs to be reached beyond the app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    /// E.164 phone number, if the directory has one.
    pub phone: Option<String>,
    /// The manager, if the directory names one.
    pub manager: Option<UserId>,
}

/// Something a fired step must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outreach {
    /// A DING_NOTICE to the recipient's devices.
    App {
        /// The recipient.
        to: UserId,
    },
    /// A DING_NOTICE to the manager, naming the recipient.
    Manager {
        /// The manager.
        to: UserId,
        /// The recipient who has not acknowledged.
        on_behalf_of: UserId,
    },
    /// An SMS or a voice call through the gateway.
    Gateway {
        /// The recipient.
        to: UserId,
        /// SMS or voice.
        channel: Channel,
        /// The number.
        phone: String,
    },
}

/// Why a request about a DING is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LadderError {
    /// The caller is not a recipient.
    #[error("not a recipient of this DING")]
    NotRecipient,
}

/// The counts of a DING's recipients by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// All recipients.
    pub total: u32,
    /// Acknowledged.
    pub acknowledged: u32,
    /// Still pending.
    pub pending: u32,
    /// Expired.
    pub expired: u32,
    /// Cancelled.
    pub cancelled: u32,
}

impl Counts {
    /// The count of lines in `state`.
    fn of(&mut self, state: LineState) -> &mut u32 {
        match state {
            LineState::Pending => &mut self.pending,
            LineState::Acknowledged(_) => &mut self.acknowledged,
            LineState::Expired(_) => &mut self.expired,
            LineState::Cancelled(_) => &mut self.cancelled,
        }
    }

    /// A line moved from `from` to `to`.
    fn moved(&mut self, from: LineState, to: LineState) {
        *self.of(from) = self.of(from).saturating_sub(1);
        *self.of(to) += 1;
    }

    /// The wire form.
    pub fn to_pb(self) -> pb::DingCounts {
        pb::DingCounts {
            total: self.total,
            acknowledged: self.acknowledged,
            pending: self.pending,
            expired: self.expired,
            cancelled: self.cancelled,
        }
    }
}

/// A DING: what it is about, its ladder, and every recipient's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Ding {
    /// Its id, unique in its conversation.
    pub id: u64,
    /// Who sent it.
    pub sender: UserId,
    /// The message it is about (0: it carries `payload`).
    pub seq: u64,
    /// Its own opaque content when `seq` is 0.
    pub payload: Bytes,
    /// The clear text for SMS and voice (empty when the ladder has no such step).
    pub sms_text: String,
    /// Its ladder.
    pub policy: Policy,
    /// When it was created.
    pub created_at_ms: u64,
    /// When the sender last DINGed its unacknowledged recipients again (0: never).
    pub redone_at_ms: u64,
    /// Each recipient's line; states change only through the methods, which keep `counts`.
    lines: BTreeMap<UserId, Line>,
    /// The lines by state, kept as states change: an acknowledgement's answer carries them, and
    /// recounting 5000 lines for each of 5000 acknowledgements would be quadratic.
    counts: Counts,
}

impl Ding {
    /// A new DING with every recipient pending and no step fired.
    pub fn new(
        id: u64,
        sender: UserId,
        content: (u64, Bytes, String),
        policy: Policy,
        recipients: impl IntoIterator<Item = UserId>,
        now_ms: u64,
    ) -> Ding {
        let (seq, payload, sms_text) = content;
        let lines: BTreeMap<UserId, Line> = recipients.into_iter().map(|u| (u, Line::new())).collect();
        let total = u32::try_from(lines.len()).unwrap_or(u32::MAX);
        let counts = Counts { total, pending: total, ..Counts::default() };
        Ding { id, sender, seq, payload, sms_text, policy, created_at_ms: now_ms, redone_at_ms: 0, lines, counts }
    }

    /// Each recipient's line, by user id.
    pub fn lines(&self) -> &BTreeMap<UserId, Line> {
        &self.lines
    }

    /// Adds (or replaces) a recipient's line as stored.
    pub fn insert_line(&mut self, user: UserId, line: Line) {
        let state = line.state;
        match self.lines.insert(user, line) {
            Some(old) => *self.counts.of(old.state) = self.counts.of(old.state).saturating_sub(1),
            None => self.counts.total += 1,
        }
        *self.counts.of(state) += 1;
    }

    /// When step `step` is due.
    pub fn due_ms(&self, step: u32) -> Option<u64> {
        let (_, after) = self.policy.steps.get(usize::try_from(step).ok()?)?;
        Some(self.created_at_ms.saturating_add(*after))
    }

    /// When pending recipients expire.
    pub fn expires_at_ms(&self) -> u64 {
        self.created_at_ms.saturating_add(self.policy.expire_after_ms)
    }

    /// Fires `step` for every pending recipient it has not reached yet. `contact` looks a
    /// recipient up in the directory. Returns what to send; the lines record each step, and a
    /// step that cannot be made (no phone, no manager) is recorded as undelivered and moves that
    /// recipient on to the next step at once.
    pub fn fire(&mut self, step: u32, now_ms: u64, contact: impl Fn(&UserId) -> Contact) -> Vec<Outreach> {
        let users: Vec<UserId> = self
            .lines
            .iter()
            .filter(|(_, line)| line.is_pending() && line.fired.is_none_or(|f| f < step))
            .map(|(user, _)| user.clone())
            .collect();
        let mut outreach = Vec::new();
        for user in users {
            self.fire_for(&user, step, now_ms, &contact, &mut outreach);
        }
        outreach
    }

    /// Fires `step` (and, while a step cannot be made, the ones after it) for one recipient.
    fn fire_for(
        &mut self,
        user: &UserId,
        mut step: u32,
        now_ms: u64,
        contact: &impl Fn(&UserId) -> Contact,
        outreach: &mut Vec<Outreach>,
    ) {
        while let Some((channel, _)) = self.policy.steps.get(usize::try_from(step).unwrap_or(usize::MAX)).copied() {
            let reach = match channel {
                Channel::App => Ok(Outreach::App { to: user.clone() }),
                Channel::Manager => contact(user)
                    .manager
                    .map(|to| Outreach::Manager { to, on_behalf_of: user.clone() })
                    .ok_or("no manager in the directory"),
                Channel::Sms | Channel::Voice => contact(user)
                    .phone
                    .map(|phone| Outreach::Gateway { to: user.clone(), channel, phone })
                    .ok_or("no phone number in the directory"),
            };
            let Some(line) = self.lines.get_mut(user) else { return };
            line.fired = Some(step);
            match reach {
                Ok(reach) => {
                    // A gateway step's outcome is recorded when the gateway answers.
                    let delivered = !channel.uses_gateway();
                    line.results.push(StepResult { step, channel, at_ms: now_ms, delivered, detail: String::new() });
                    outreach.push(reach);
                    return;
                }
                Err(why) => {
                    line.results.push(StepResult {
                        step,
                        channel,
                        at_ms: now_ms,
                        delivered: false,
                        detail: why.into(),
                    });
                    step += 1;
                }
            }
        }
    }

    /// Records the gateway's answer for `user`'s step. A failure moves the recipient on to the
    /// next step at once rather than leaving it waiting for that step's time.
    pub fn gateway_answered(
        &mut self,
        user: &UserId,
        step: u32,
        outcome: Result<(), String>,
        now_ms: u64,
        contact: impl Fn(&UserId) -> Contact,
    ) -> Vec<Outreach> {
        let Some(line) = self.lines.get_mut(user) else { return Vec::new() };
        let Some(result) = line.results.iter_mut().rev().find(|r| r.step == step) else { return Vec::new() };
        let mut outreach = Vec::new();
        match outcome {
            Ok(()) => result.delivered = true,
            Err(why) => {
                result.detail = if why.is_empty() { "gateway failed".into() } else { why };
                if line.is_pending() && line.fired == Some(step) {
                    self.fire_for(user, step + 1, now_ms, &contact, &mut outreach);
                }
            }
        }
        outreach
    }

    /// `user` acknowledges. Returns whether anything changed (a second acknowledgement does not).
    ///
    /// # Errors
    /// [`LadderError::NotRecipient`] for anyone else.
    pub fn acknowledge(&mut self, user: &UserId, now_ms: u64) -> Result<bool, LadderError> {
        let line = self.lines.get_mut(user).ok_or(LadderError::NotRecipient)?;
        if !line.is_pending() {
            return Ok(false);
        }
        line.state = LineState::Acknowledged(now_ms);
        self.counts.moved(LineState::Pending, line.state);
        Ok(true)
    }

    /// The sender cancels: every pending recipient is cancelled. Returns them.
    pub fn cancel(&mut self, now_ms: u64) -> Vec<UserId> {
        self.settle(LineState::Cancelled(now_ms))
    }

    /// Time ran out: every pending recipient expires. Returns them.
    pub fn expire(&mut self, now_ms: u64) -> Vec<UserId> {
        self.settle(LineState::Expired(now_ms))
    }

    fn settle(&mut self, state: LineState) -> Vec<UserId> {
        let mut settled = Vec::new();
        for (user, line) in &mut self.lines {
            if line.is_pending() {
                line.state = state;
                self.counts.moved(LineState::Pending, state);
                settled.push(user.clone());
            }
        }
        settled
    }

    /// Recipients still pending.
    pub fn pending(&self) -> impl Iterator<Item = &UserId> {
        self.lines.iter().filter(|(_, l)| l.is_pending()).map(|(u, _)| u)
    }

    /// The counts by state.
    pub fn counts(&self) -> Counts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ding::policy::standard_policy;

    const T0: u64 = 1_000_000;
    const MIN: u64 = 60_000;

    fn id(s: &str) -> UserId {
        UserId::new(s).expect("valid")
    }

    fn ding(recipients: &[&str]) -> Ding {
        let policy = Policy::from_config("standard", &standard_policy()).expect("valid");
        let content = (7, Bytes::new(), "Server down, call in".to_owned());
        Ding::new(1, id("boss"), content, policy, recipients.iter().map(|r| id(r)), T0)
    }

    /// Everyone has a phone; everyone's manager is `boss`, except `solo`, who has neither.
    fn directory(user: &UserId) -> Contact {
        if user.as_str() == "solo" {
            return Contact::default();
        }
        Contact { phone: Some(format!("+8613800{:06}", user.as_str().len())), manager: Some(id("boss")) }
    }

    #[test]
    fn the_whole_ladder_fires_in_order_at_its_times_for_whoever_has_not_acknowledged() {
        let mut d = ding(&["alice", "bob"]);
        assert_eq!(
            (0..4).map(|s| d.due_ms(s)).collect::<Vec<_>>(),
            [Some(T0), Some(T0 + 5 * MIN), Some(T0 + 15 * MIN), Some(T0 + 30 * MIN)]
        );
        assert_eq!(d.fire(0, T0, directory), vec![Outreach::App { to: id("alice") }, Outreach::App { to: id("bob") }]);
        assert_eq!(d.acknowledge(&id("alice"), T0 + MIN), Ok(true));
        let sms = d.fire(1, T0 + 5 * MIN, directory);
        assert!(matches!(sms.as_slice(), [Outreach::Gateway { to, channel: Channel::Sms, .. }] if *to == id("bob")));
        d.gateway_answered(&id("bob"), 1, Ok(()), T0 + 5 * MIN, directory);
        let voice = d.fire(2, T0 + 15 * MIN, directory);
        assert!(matches!(voice.as_slice(), [Outreach::Gateway { channel: Channel::Voice, .. }]));
        let manager = d.fire(3, T0 + 30 * MIN, directory);
        assert_eq!(manager, vec![Outreach::Manager { to: id("boss"), on_behalf_of: id("bob") }]);
        assert_eq!(d.expire(d.expires_at_ms()), vec![id("bob")]);
        let counts = d.counts();
        assert_eq!((counts.total, counts.acknowledged, counts.expired, counts.pending), (2, 1, 1, 0));
        assert_eq!(d.lines()[&id("bob")].results.iter().map(|r| r.step).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(d.acknowledge(&id("bob"), T0 + 31 * MIN), Ok(false), "too late: expired stays expired");
        assert_eq!(d.acknowledge(&id("carol"), T0), Err(LadderError::NotRecipient));
    }

    #[test]
    fn acknowledging_at_any_stage_stops_the_rest() {
        for stage in 0..4u32 {
            let mut d = ding(&["alice"]);
            for step in 0..=stage {
                let fired = d.fire(step, d.due_ms(step).expect("step"), directory);
                if let [Outreach::Gateway { to, .. }] = fired.as_slice() {
                    let to = to.clone();
                    d.gateway_answered(&to, step, Ok(()), T0, directory);
                }
            }
            d.acknowledge(&id("alice"), T0 + 31 * MIN).expect("recipient");
            for later in stage + 1..4 {
                assert!(d.fire(later, T0 + 40 * MIN, directory).is_empty(), "stage {stage}: step {later} fired");
            }
        }
    }

    #[test]
    fn a_failed_or_impossible_step_moves_on_to_the_next_at_once() {
        let mut d = ding(&["alice", "solo"]);
        d.fire(0, T0, directory);
        // solo has no phone: SMS and voice are recorded as undelivered and the manager step
        // fires at once — but solo has no manager either, so the ladder runs out for solo.
        let fired = d.fire(1, T0 + 5 * MIN, directory);
        assert!(matches!(fired.as_slice(), [Outreach::Gateway { to, .. }] if *to == id("alice")));
        let solo = &d.lines()[&id("solo")];
        assert_eq!(
            solo.results.iter().map(|r| (r.step, r.delivered)).collect::<Vec<_>>(),
            [(0, true), (1, false), (2, false), (3, false)]
        );
        assert_eq!(d.lines()[&id("alice")].awaiting_gateway(), Some(1), "the SMS awaits the gateway");
        // The gateway refuses alice's SMS: the voice call goes out now, not at 15 minutes.
        let next = d.gateway_answered(&id("alice"), 1, Err("HTTP 500".into()), T0 + 6 * MIN, directory);
        assert!(matches!(next.as_slice(), [Outreach::Gateway { channel: Channel::Voice, .. }]));
        assert!(d.fire(2, T0 + 15 * MIN, directory).is_empty(), "step 2 already fired for alice");
        assert_eq!(d.cancel(T0 + 16 * MIN).len(), 2);
        assert!(d.fire(3, T0 + 30 * MIN, directory).is_empty(), "cancelled");
    }
}
