//! What is limited (classes of cost) and at which level (scopes).

use std::fmt;

/// A kind of cost with its own bucket at every scope. A new limited request kind (DINGs,
/// check-ins) is a variant here, a field in [`crate::config::ScopeLimits`] and its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// SEND requests, one token each.
    Sends,
    /// SEND payload bytes, one token per byte.
    Bytes,
    /// CREATE_GROUP requests, one token each.
    GroupCreations,
    /// Every other request served by a shard or the store, one token each.
    Requests,
}

impl Class {
    /// Every class, in the order their buckets are checked.
    pub const ALL: [Class; 4] = [Class::Sends, Class::Bytes, Class::GroupCreations, Class::Requests];

    /// The class's configuration key, also used in refusal messages.
    pub fn name(self) -> &'static str {
        match self {
            Class::Sends => "sends",
            Class::Bytes => "bytes",
            Class::GroupCreations => "group_creations",
            Class::Requests => "requests",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who shares a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One connection.
    Session,
    /// Every session of one user.
    User,
    /// Every session of one organisation.
    Org,
}

impl Scope {
    /// Every scope, narrowest first.
    pub const ALL: [Scope; 3] = [Scope::Session, Scope::User, Scope::Org];

    /// The scope's configuration table, also used in refusal messages.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Session => "session",
            Scope::User => "user",
            Scope::Org => "org",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one request costs: at most two classes (a SEND costs one send and its bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    first: (Class, u64),
    second: Option<(Class, u64)>,
}

impl Demand {
    /// A request costing one token of `class`.
    pub fn one(class: Class) -> Self {
        Self { first: (class, 1), second: None }
    }

    /// A SEND with a payload of `bytes` bytes.
    pub fn send(bytes: u64) -> Self {
        Self { first: (Class::Sends, 1), second: Some((Class::Bytes, bytes)) }
    }

    /// What the request costs `class`, if it is charged to it at all.
    pub fn cost(&self, class: Class) -> Option<u64> {
        std::iter::once(self.first).chain(self.second).find(|(c, _)| *c == class).map(|(_, cost)| cost)
    }
}
