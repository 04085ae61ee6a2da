//! Checking a directory import as a whole before anything is written: one bad entry refuses it.

use std::collections::{HashMap, HashSet};

use herald_protocol::{UserId, pb};

/// Longest display name or department, in bytes.
const MAX_TEXT_LEN: usize = 256;
/// Most directory roles per user.
const MAX_ROLES: usize = 16;
/// Longest directory role, in bytes.
const MAX_ROLE_LEN: usize = 64;
/// Most users in one import.
const MAX_IMPORT: usize = 10_000;
/// Longest chain of managers followed when looking for a cycle; deeper is refused as a cycle.
const MAX_CHAIN: usize = 1_000;

/// Why an import is refused. Names the entry, so an operator can fix the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// More entries than one import takes.
    #[error("an import holds at most {MAX_IMPORT} users, this one {0}")]
    TooMany(usize),
    /// An entry's user id is not an id.
    #[error("entry {index}: user_id {id:?}: {reason}")]
    BadId {
        /// The entry's position.
        index: usize,
        /// The text.
        id: String,
        /// Why it is not an id.
        reason: String,
    },
    /// The same user twice.
    #[error("entry {index}: user {user} appears twice")]
    Duplicate {
        /// The second entry's position.
        index: usize,
        /// The user.
        user: UserId,
    },
    /// A text field is too long.
    #[error("entry {index}: {field} is over {MAX_TEXT_LEN} bytes")]
    TooLong {
        /// The entry's position.
        index: usize,
        /// The field.
        field: &'static str,
    },
    /// The manager is in neither the import nor the directory.
    #[error("entry {index}: manager {manager} is not in the directory")]
    UnknownManager {
        /// The entry's position.
        index: usize,
        /// The manager named.
        manager: UserId,
    },
    /// A phone number that is not E.164.
    #[error("entry {index}: phone {phone:?} is not E.164 (+ and 8 to 15 digits)")]
    BadPhone {
        /// The entry's position.
        index: usize,
        /// The text.
        phone: String,
    },
    /// Too many roles, or a malformed one.
    #[error("entry {index}: at most {MAX_ROLES} roles of 1 to {MAX_ROLE_LEN} bytes of [a-z0-9_.-]")]
    BadRoles {
        /// The entry's position.
        index: usize,
    },
    /// Following managers from this user comes back to it.
    #[error("user {0} is (indirectly) their own manager")]
    Cycle(UserId),
}

/// One checked directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedUser {
    /// The user.
    pub user: UserId,
    /// The entry as stored.
    pub entry: pb::DirectoryUser,
}

/// Checks an import against the directory as it would be after it. `stored_manager` answers,
/// for a user not in the import, whether the directory holds it (`Some`) and its manager.
///
/// # Errors
/// The first problem found, naming the entry.
pub fn validate_import(
    users: Vec<pb::DirectoryUser>,
    stored_manager: impl Fn(&UserId) -> Option<Option<UserId>>,
) -> Result<Vec<ImportedUser>, ImportError> {
    if users.len() > MAX_IMPORT {
        return Err(ImportError::TooMany(users.len()));
    }
    let mut checked = Vec::with_capacity(users.len());
    let mut managers: HashMap<UserId, Option<UserId>> = HashMap::new();
    for (index, entry) in users.into_iter().enumerate() {
        let user = parse_id(index, &entry.user_id)?;
        let manager = if entry.manager_id.is_empty() { None } else { Some(parse_id(index, &entry.manager_id)?) };
        for (field, text) in [("display_name", &entry.display_name), ("department", &entry.department)] {
            if text.len() > MAX_TEXT_LEN {
                return Err(ImportError::TooLong { index, field });
            }
        }
        if !entry.phone.is_empty() && !is_e164(&entry.phone) {
            return Err(ImportError::BadPhone { index, phone: entry.phone });
        }
        if entry.roles.len() > MAX_ROLES || !entry.roles.iter().all(|r| is_role(r)) {
            return Err(ImportError::BadRoles { index });
        }
        if managers.insert(user.clone(), manager).is_some() {
            return Err(ImportError::Duplicate { index, user });
        }
        let entry = pb::DirectoryUser { user_id: user.to_string(), ..entry };
        checked.push(ImportedUser { user, entry });
    }
    let manager_of = |user: &UserId| managers.get(user).cloned().or_else(|| stored_manager(user));
    for (index, imported) in checked.iter().enumerate() {
        if let Some(Some(manager)) = managers.get(&imported.user)
            && manager_of(manager).is_none()
        {
            return Err(ImportError::UnknownManager { index, manager: manager.clone() });
        }
        check_chain(&imported.user, &manager_of)?;
    }
    Ok(checked)
}

/// `+` and 8 to 15 digits.
fn is_e164(phone: &str) -> bool {
    phone.strip_prefix('+').is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

fn is_role(role: &str) -> bool {
    (1..=MAX_ROLE_LEN).contains(&role.len())
        && role.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

fn parse_id(index: usize, raw: &str) -> Result<UserId, ImportError> {
    UserId::new(raw).map_err(|e| ImportError::BadId { index, id: raw.to_owned(), reason: e.to_string() })
}

/// Follows `user`'s managers upwards; coming back to a user already seen is a cycle.
fn check_chain(user: &UserId, manager_of: &impl Fn(&UserId) -> Option<Option<UserId>>) -> Result<(), ImportError> {
    let mut seen = HashSet::from([user.clone()]);
    let mut current = user.clone();
    for _ in 0..MAX_CHAIN {
        match manager_of(&current).flatten() {
            None => return Ok(()),
            Some(next) if !seen.insert(next.clone()) => return Err(ImportError::Cycle(user.clone())),
            Some(next) => current = next,
        }
    }
    Err(ImportError::Cycle(user.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, manager: &str) -> pb::DirectoryUser {
        pb::DirectoryUser { user_id: user.into(), manager_id: manager.into(), ..Default::default() }
    }

    fn id(s: &str) -> UserId {
        UserId::new(s).expect("valid")
    }

    /// A directory holding only `ceo`, who has no manager.
    fn stored(user: &UserId) -> Option<Option<UserId>> {
        (user.as_str() == "ceo").then_some(None)
    }

    #[test]
    fn managers_may_be_in_the_import_or_the_directory() {
        let users = vec![entry("alice", "bob"), entry("bob", "ceo")];
        let checked = validate_import(users, stored).expect("valid");
        assert_eq!(checked.iter().map(|u| u.user.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
    }

    #[test]
    fn every_bad_entry_is_named() {
        let cases = [
            (vec![entry("alice", "nobody")], ImportError::UnknownManager { index: 0, manager: id("nobody") }),
            (vec![entry("a", ""), entry("a", "")], ImportError::Duplicate { index: 1, user: id("a") }),
            (vec![entry("alice", "alice")], ImportError::Cycle(id("alice"))),
            (vec![entry("a", "b"), entry("b", "c"), entry("c", "a")], ImportError::Cycle(id("a"))),
        ];
        for (users, expected) in cases {
            assert_eq!(validate_import(users, stored), Err(expected));
        }
        let bad_id = validate_import(vec![entry("", "")], stored).expect_err("empty id");
        assert!(matches!(bad_id, ImportError::BadId { index: 0, .. }), "{bad_id}");
        let phone = pb::DirectoryUser { phone: "555-1234".into(), ..entry("a", "") };
        assert!(matches!(validate_import(vec![phone], stored), Err(ImportError::BadPhone { index: 0, .. })));
        let roles = pb::DirectoryUser { roles: vec!["HR Lead".into()], ..entry("a", "") };
        assert_eq!(validate_import(vec![roles], stored), Err(ImportError::BadRoles { index: 0 }));
        let fine = pb::DirectoryUser { phone: "+8613800138000".into(), roles: vec!["hr".into()], ..entry("a", "") };
        assert!(validate_import(vec![fine], stored).is_ok());
        let long = pb::DirectoryUser { display_name: "x".repeat(300), ..entry("a", "") };
        assert_eq!(validate_import(vec![long], stored), Err(ImportError::TooLong { index: 0, field: "display_name" }));
    }
}
