//! Administration: organisations and their policies, user directories, device revocation,
//! conversation inspection and archiving, and audit queries, for tokens with the `admin` or
//! `operator` role.
//!
//! Parsing and authorisation ([`parse`]) are pure; [`AdminDesk`] applies what was parsed to the
//! store and to the live tables sessions and shards read ([`OrgTable`], [`Revocations`]).

mod desk;
mod directory;
mod orgs;
mod request;
mod revocations;

pub use desk::AdminDesk;
pub use directory::{ImportError, ImportedUser, validate_import};
pub use orgs::OrgTable;
pub use request::{ADMIN_ROLE, AdminRequest, OPERATOR_ROLE, parse};
pub(crate) use request::{page, scope};
pub use revocations::Revocations;
