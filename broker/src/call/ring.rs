//! Invites: who a call rings, and how each ring ended.

/// How one invitee's ring stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    /// Every device of the user is ringing until `deadline_ms`.
    Ringing {
        /// When the ring times out as missed.
        deadline_ms: u64,
    },
    /// The user answered (joined) on one device.
    Accepted,
    /// The user declined.
    Declined,
    /// Nobody answered in time.
    Missed,
    /// The call ended while ringing.
    Cancelled,
}

/// One invitee's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invite {
    /// Where it stands.
    pub state: InviteState,
}

impl Invite {
    /// An invite ringing until `deadline_ms`.
    pub fn ringing(deadline_ms: u64) -> Self {
        Self { state: InviteState::Ringing { deadline_ms } }
    }

    /// Whether it still rings.
    pub fn is_ringing(&self) -> bool {
        matches!(self.state, InviteState::Ringing { .. })
    }

    /// When it times out, while it rings.
    pub fn deadline_ms(&self) -> Option<u64> {
        match self.state {
            InviteState::Ringing { deadline_ms } => Some(deadline_ms),
            _ => None,
        }
    }
}

/// Why a user's devices stop ringing: the reason sent with the stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingEnd {
    /// The user answered on one of their devices.
    Accepted,
    /// The user declined.
    Declined,
    /// The ring timed out.
    Missed,
    /// The call ended first.
    Cancelled,
}

impl RingEnd {
    pub(crate) fn final_state(self) -> InviteState {
        match self {
            RingEnd::Accepted => InviteState::Accepted,
            RingEnd::Declined => InviteState::Declined,
            RingEnd::Missed => InviteState::Missed,
            RingEnd::Cancelled => InviteState::Cancelled,
        }
    }
}
