//! Identifier newtypes shared by every layer.
//!
//! Organisation, user and device ids are short printable strings chosen by the operator or the
//! app. They are checked once, where they enter (a token, a HELLO), and carried as these types
//! afterwards, so nothing downstream sees an empty or oversized id.

/// Why a string is not a valid identifier.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum IdError {
    /// The id is empty.
    #[error("{kind} is empty")]
    Empty {
        /// Which kind of id.
        kind: &'static str,
    },
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    #[error("{kind} is {len} bytes long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Which kind of id.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The id holds a character outside `[A-Za-z0-9._:@-]`.
    #[error("{kind} holds {found:?}; only A-Z a-z 0-9 . _ : @ - are allowed")]
    BadCharacter {
        /// Which kind of id.
        kind: &'static str,
        /// The first offending character.
        found: char,
    },
}

/// Longest organisation, user or device id, in bytes.
pub const MAX_ID_LEN: usize = 64;

fn check(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len: s.len() });
    }
    match s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-'))) {
        Some(found) => Err(IdError::BadCharacter { kind, found }),
        None => Ok(()),
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
        #[cfg_attr(feature = "serde", serde(try_from = "String", into = "String"))]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = IdError;

            fn try_from(id: String) -> Result<Self, IdError> {
                Self::new(id)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl $name {
            /// Checks and wraps an id.
            ///
            /// # Errors
            /// [`IdError`] if `id` is empty, longer than 64 bytes, or holds a character outside
            /// `[A-Za-z0-9._:@-]`.
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                check($kind, &id)?;
                Ok(Self(id))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// An organisation (tenant). Every key, query and fan-out is scoped by one.
    OrgId,
    "organisation id"
);
string_id!(
    /// A user, unique within their organisation.
    UserId,
    "user id"
);
string_id!(
    /// One installation of an app on one device, unique within its user.
    DeviceId,
    "device id"
);

/// A session, unique within one broker process's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl SessionId {
    /// Wraps a raw session id.
    pub const fn new(id: u64) -> Self {
        Self(id)
    }

    /// The raw id, as it appears on the wire.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{:x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_allowed_alphabet() {
        assert!(UserId::new("alice.smith@acme-eu:42_x").is_ok());
    }

    #[test]
    fn ids_refuse_empty_long_and_odd_strings() {
        assert_eq!(OrgId::new(""), Err(IdError::Empty { kind: "organisation id" }));
        assert!(matches!(UserId::new("a".repeat(65)), Err(IdError::TooLong { len: 65, .. })));
        assert!(matches!(DeviceId::new("ph one"), Err(IdError::BadCharacter { found: ' ', .. })));
        assert!(matches!(DeviceId::new("é"), Err(IdError::BadCharacter { found: 'é', .. })));
    }
}
