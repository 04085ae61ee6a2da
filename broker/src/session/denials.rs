//! Refusals worth an audit record: a request answered NOT_FOUND or FORBIDDEN inside an
//! authenticated session. Probing another organisation's ids, or an admin operation without the
//! role, leaves a trace in the prober's own organisation's audit chain (the victim's chain is
//! untouched: a NOT_FOUND there would tell the prober nothing and the victim's admins nothing
//! they can act on).
//!
//! Sans-IO: the connection loop tells it which requests came in and which answers go out; it
//! says which answers to audit. A token bucket per session keeps a probe flood from flooding
//! the chain: beyond the budget refusals are counted, and the next audited one carries the count.

use std::collections::HashMap;
use std::time::Instant;

use herald_protocol::{ErrorCode, Frame, FrameType, RequestId, pb};

/// Audited refusals a session may burst, and how fast the budget refills.
const BURST: f64 = 20.0;
const PER_SECOND: f64 = 10.0;
/// Most requests remembered while unanswered (the in-flight limit is far below it).
const REMEMBERED: usize = 4096;

/// One refusal to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denial {
    /// The refused request's frame type.
    pub(crate) request: FrameType,
    pub(crate) code: ErrorCode,
    /// The broker's message, as the client saw it (never a payload).
    pub(crate) message: String,
    /// Refusals of this session not audited since the previous audited one (over budget).
    pub(crate) suppressed: u64,
}

/// The requests of one session awaiting their answers, and its audit budget.
#[derive(Debug)]
pub(crate) struct Denials {
    pending: HashMap<RequestId, FrameType>,
    tokens: f64,
    refilled_at: Instant,
    suppressed: u64,
}

impl Denials {
    pub(crate) fn new(now: Instant) -> Self {
        Self { pending: HashMap::new(), tokens: BURST, refilled_at: now, suppressed: 0 }
    }

    /// A request arrived.
    pub(crate) fn requested(&mut self, frame: &Frame) {
        if self.pending.len() < REMEMBERED {
            self.pending.insert(frame.request_id(), frame.frame_type());
        }
    }

    /// The answer to `request_id` is going out, with `error` when it is an ERROR (decoded once,
    /// by the caller, which also counts it): the refusal to audit, if it is one and the budget
    /// allows.
    pub(crate) fn answered(
        &mut self,
        request_id: RequestId,
        error: Option<&pb::Error>,
        now: Instant,
    ) -> Option<Denial> {
        let request = self.pending.remove(&request_id)?;
        let error = error?;
        let code = ErrorCode::from_u32(error.code);
        if code != ErrorCode::NOT_FOUND && code != ErrorCode::FORBIDDEN {
            return None;
        }
        if !self.take_token(now) {
            self.suppressed += 1;
            return None;
        }
        let suppressed = std::mem::take(&mut self.suppressed);
        Some(Denial { request, code, message: error.message.clone(), suppressed })
    }

    /// Refusals over the budget not yet reported, to record when the session ends.
    pub(crate) fn take_unaudited(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }

    fn take_token(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * PER_SECOND).min(BURST);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use std::time::Duration;

    use herald_protocol::Flags;

    use super::*;

    fn request(id: u32) -> Frame {
        Frame::new(FrameType::HISTORY, Flags::EMPTY, RequestId::new(id), Bytes::new())
    }

    fn answer(denials: &mut Denials, frame: &Frame, now: Instant) -> Option<Denial> {
        denials.answered(frame.request_id(), frame.decode_body::<pb::Error>().ok().as_ref(), now)
    }

    fn refusal(id: u32, code: ErrorCode) -> Frame {
        Frame::error(RequestId::new(id), code, "no such conversation")
    }

    #[test]
    fn not_found_and_forbidden_answers_are_audited_with_the_request_they_refuse() {
        let now = Instant::now();
        let mut denials = Denials::new(now);
        for id in 1..=3 {
            denials.requested(&request(id));
        }
        let denial = answer(&mut denials, &refusal(1, ErrorCode::NOT_FOUND), now).expect("audited");
        assert_eq!((denial.request, denial.code, denial.suppressed), (FrameType::HISTORY, ErrorCode::NOT_FOUND, 0));
        assert_eq!(denial.message, "no such conversation");
        assert!(answer(&mut denials, &refusal(2, ErrorCode::RATE_LIMITED), now).is_none(), "not an access refusal");
        assert!(answer(&mut denials, &refusal(1, ErrorCode::FORBIDDEN), now).is_none(), "answered already");
        assert!(answer(&mut denials, &refusal(9, ErrorCode::FORBIDDEN), now).is_none(), "never requested");
        assert!(answer(&mut denials, &Frame::error(RequestId::new(3), ErrorCode::FORBIDDEN, "x"), now).is_some());
    }

    #[test]
    fn a_flood_is_audited_up_to_the_budget_then_counted() {
        let start = Instant::now();
        let mut denials = Denials::new(start);
        let audited = (1..=100)
            .filter(|&id| {
                denials.requested(&request(id));
                answer(&mut denials, &refusal(id, ErrorCode::NOT_FOUND), start).is_some()
            })
            .count();
        assert_eq!(audited, BURST as usize);
        // A second later the budget has refilled: the next refusal carries the count it missed.
        let later = start + Duration::from_secs(1);
        denials.requested(&request(101));
        let denial = answer(&mut denials, &refusal(101, ErrorCode::NOT_FOUND), later).expect("audited again");
        assert_eq!(denial.suppressed, 100 - BURST as u64);
        assert_eq!(denials.take_unaudited(), 0, "reported with that record");
        denials.requested(&request(102));
        denials.requested(&request(103));
        assert!(answer(&mut denials, &refusal(102, ErrorCode::NOT_FOUND), later).is_some());
        for _ in 0..BURST as u32 {
            denials.requested(&request(103));
            answer(&mut denials, &refusal(103, ErrorCode::NOT_FOUND), later);
        }
        assert!(denials.take_unaudited() > 0, "what the budget skipped is left for the session's end");
    }
}
