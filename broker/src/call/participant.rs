//! One participant: a user's device in the call, with its media and presence state.

use herald_protocol::{DeviceId, UserId};

/// A device in a call. A user may take part from several devices; each holds its own slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
}

impl Endpoint {
    /// The endpoint of `user` on `device`.
    pub fn new(user: UserId, device: DeviceId) -> Self {
        Self { user, device }
    }
}

/// A user's role in a call. Roles belong to users, so all of a user's devices share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs the call: every control, ending it, handing the role on. Exactly one per call.
    Host,
    /// Mutes, removes, locks, records and takes over screen sharing; cannot end the call or
    /// appoint others.
    CoHost,
    /// Controls only their own media, hand and screen share.
    Participant,
}

impl Role {
    /// Whether this role may use the shared host controls.
    pub fn controls(self) -> bool {
        matches!(self, Role::Host | Role::CoHost)
    }
}

/// Whether a participant's device is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// In the call.
    Connected,
    /// Lost its connection; keeps the slot until `until_ms`.
    Dropped {
        /// End of the rejoin grace.
        until_ms: u64,
    },
}

/// A participant's state as the call keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// When the device first joined (a rejoin within the grace keeps it).
    pub joined_at_ms: u64,
    /// Microphone muted.
    pub audio_muted: bool,
    /// Camera off.
    pub video_muted: bool,
    /// Hand raised.
    pub hand_raised: bool,
    /// Connected or within its rejoin grace.
    pub presence: Presence,
}

impl Participant {
    /// A participant joining now, with the media state it asked for.
    pub fn joining(now_ms: u64, audio_muted: bool, video_muted: bool) -> Self {
        Self { joined_at_ms: now_ms, audio_muted, video_muted, hand_raised: false, presence: Presence::Connected }
    }

    /// Whether the device is connected now.
    pub fn connected(&self) -> bool {
        self.presence == Presence::Connected
    }
}

/// A participant as the list shows it: what snapshots and deltas carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantView {
    /// Which device.
    pub endpoint: Endpoint,
    /// The participant's state.
    pub state: Participant,
    /// The user's role.
    pub role: Role,
    /// Whether this device holds the screen share.
    pub sharing: bool,
}
