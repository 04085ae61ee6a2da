//! The token revocation list: tokens, devices and users refused although their tokens verify.
//!
//! Tokens are self-contained and live until `exp`, so without a list a stolen token or a
//! departed employee's device keeps working until then. The operator keeps a text file; the
//! broker reads it at start and on every reload (SIGHUP), refuses matching HELLOs with
//! TOKEN_REVOKED, and closes matching sessions already open.
//!
//! ```text
//! # one entry per line; blank lines and lines starting with # are ignored
//! jti 7d0f6c1e-2b44-4c8e-9a51-3f0e8d3a1b27     a token, by its `jti` claim
//! device acme/alice/phone-1                    every token of one device of one user
//! user acme/bob                                every token of one user
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use herald_protocol::{DeviceId, OrgId, UserId};

use super::Identity;

/// Longest `jti` accepted in the file, in bytes; identity providers use UUIDs or similar.
const MAX_JTI_LEN: usize = 256;

/// Why a revocation list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// The file could not be read.
    #[error("cannot read revocation list {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a valid entry; the whole file is refused, so a typo never silently
    /// un-revokes someone.
    #[error("{path}:{line}: {reason}")]
    Syntax {
        /// The file (empty when parsed from text).
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The revoked token ids, devices and users. Immutable; a reload builds a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    token_ids: HashSet<String>,
    devices: HashSet<(OrgId, UserId, DeviceId)>,
    users: HashSet<(OrgId, UserId)>,
}

impl RevocationList {
    /// Parses the file format of the module docs.
    ///
    /// # Errors
    /// [`RevocationError::Syntax`] naming the first bad line.
    pub fn parse(text: &str) -> Result<Self, RevocationError> {
        let mut list = Self::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            list.add(line).map_err(|reason| RevocationError::Syntax {
                path: PathBuf::new(),
                line: index + 1,
                reason,
            })?;
        }
        Ok(list)
    }

    /// Reads and parses `path`.
    ///
    /// # Errors
    /// [`RevocationError`] if the file cannot be read or a line is invalid.
    pub fn load(path: &Path) -> Result<Self, RevocationError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| RevocationError::Io { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|e| match e {
            RevocationError::Syntax { line, reason, .. } => {
                RevocationError::Syntax { path: path.to_owned(), line, reason }
            }
            other => other,
        })
    }

    fn add(&mut self, line: &str) -> Result<(), String> {
        let mut words = line.split_whitespace();
        let (Some(kind), Some(value), None) = (words.next(), words.next(), words.next()) else {
            return Err("expected `jti <id>`, `device <org>/<user>/<device>` or `user <org>/<user>`".into());
        };
        let parts: Vec<&str> = value.split('/').collect();
        match (kind, parts.as_slice()) {
            ("jti", [_]) if value.len() <= MAX_JTI_LEN => {
                self.token_ids.insert(value.to_owned());
            }
            ("jti", _) => return Err(format!("a jti is one word of at most {MAX_JTI_LEN} bytes without `/`")),
            ("device", [org, user, device]) => {
                let id = (OrgId::new(*org), UserId::new(*user), DeviceId::new(*device));
                let (Ok(org), Ok(user), Ok(device)) = id else { return Err(format!("invalid id in {value}")) };
                self.devices.insert((org, user, device));
            }
            ("user", [org, user]) => {
                let (Ok(org), Ok(user)) = (OrgId::new(*org), UserId::new(*user)) else {
                    return Err(format!("invalid id in {value}"));
                };
                self.users.insert((org, user));
            }
            ("device", _) => return Err("expected `device <org>/<user>/<device>`".into()),
            ("user", _) => return Err("expected `user <org>/<user>`".into()),
            (other, _) => return Err(format!("unknown entry kind `{other}`")),
        }
        Ok(())
    }

    /// How many entries the list holds.
    pub fn len(&self) -> usize {
        self.token_ids.len() + self.devices.len() + self.users.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a session of `org`/`user`/`device` under the token `token_id` is revoked.
    pub fn revokes(&self, org: &OrgId, user: &UserId, device: &DeviceId, token_id: Option<&str>) -> bool {
        if token_id.is_some_and(|jti| self.token_ids.contains(jti)) {
            return true;
        }
        // Allocation-free lookups would need borrowed tuple keys; reloads and HELLOs are rare
        // enough that the clones do not matter, and an empty list skips them.
        if self.users.is_empty() && self.devices.is_empty() {
            return false;
        }
        self.users.contains(&(org.clone(), user.clone()))
            || self.devices.contains(&(org.clone(), user.clone(), device.clone()))
    }

    /// Whether `identity`'s session is revoked.
    pub fn revokes_identity(&self, identity: &Identity) -> bool {
        self.revokes(&identity.org, &identity.user, &identity.device, identity.token_id.as_deref())
    }
}

/// The revocation list in force, shared by every session and replaced whole on reload.
#[derive(Debug, Default)]
pub struct Revocations {
    current: RwLock<Arc<RevocationList>>,
}

impl Revocations {
    /// Starts with `list`.
    pub fn new(list: RevocationList) -> Self {
        Self { current: RwLock::new(Arc::new(list)) }
    }

    /// The list in force now.
    pub fn current(&self) -> Arc<RevocationList> {
        // A panic while holding the lock cannot leave a half-written `Arc`: the value is intact.
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Puts `list` in force for every later check.
    pub fn replace(&self, list: RevocationList) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(org: &str, user: &str, device: &str) -> (OrgId, UserId, DeviceId) {
        (OrgId::new(org).expect("id"), UserId::new(user).expect("id"), DeviceId::new(device).expect("id"))
    }

    #[test]
    fn entries_revoke_what_they_name_and_nothing_else() {
        let list = RevocationList::parse(
            "# leavers\n\njti t-123\ndevice acme/alice/phone-1\n  user acme/bob   # trailing words are refused\n",
        );
        assert!(matches!(list, Err(RevocationError::Syntax { line: 5, .. })), "{list:?}");
        let list = RevocationList::parse("# leavers\n\njti t-123\ndevice acme/alice/phone-1\n  user acme/bob\n")
            .expect("valid");
        assert_eq!(list.len(), 3);
        let (acme, alice, phone) = ids("acme", "alice", "phone-1");
        assert!(list.revokes(&acme, &alice, &phone, None), "the device");
        let (_, _, laptop) = ids("acme", "alice", "laptop");
        assert!(!list.revokes(&acme, &alice, &laptop, None), "alice's other device");
        assert!(list.revokes(&acme, &alice, &laptop, Some("t-123")), "the token id");
        let (_, bob, _) = ids("acme", "bob", "x");
        assert!(list.revokes(&acme, &bob, &laptop, None), "every device of bob");
        let (globex, _, _) = ids("globex", "bob", "x");
        assert!(!list.revokes(&globex, &bob, &laptop, None), "bob of another organisation");
        assert!(!list.revokes(&acme, &UserId::new("carol").expect("id"), &phone, Some("t-124")));
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        for (text, line) in [
            ("jti a\nsession acme/alice\n", 2),
            ("device acme/alice\n", 1),
            ("user acme/bad user\n", 1),
            ("user acme/alice/phone\n", 1),
            ("#\njti\n", 2),
            ("jti a/b\n", 1),
        ] {
            match RevocationList::parse(text) {
                Err(RevocationError::Syntax { line: got, .. }) => assert_eq!(got, line, "{text:?}"),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        assert!(RevocationList::parse("").expect("empty is valid").is_empty());
    }

    #[test]
    fn a_replaced_list_is_what_later_checks_see() {
        let revocations = Revocations::default();
        let (acme, alice, phone) = ids("acme", "alice", "phone-1");
        assert!(!revocations.current().revokes(&acme, &alice, &phone, None));
        revocations.replace(RevocationList::parse("user acme/alice").expect("valid"));
        assert!(revocations.current().revokes(&acme, &alice, &phone, None));
    }
}
