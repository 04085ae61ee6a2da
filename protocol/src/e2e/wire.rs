//! Byte-level encoding shared by every e2e structure (PROTOCOL.md §18.2).
//!
//! Integers are big-endian; an id is one length byte followed by that many ASCII bytes
//! (`id8`). The reader never indexes: every read is checked and a short input becomes
//! [`E2eError::Truncated`], so decoding peer bytes cannot panic.

use super::{E2eError, SIGNATURE_LEN};
use crate::{DeviceId, OrgId, UserId};

/// Appends `id8(id)`: one length byte, then the id's bytes. Ids are at most 64 bytes long
/// ([`crate::MAX_ID_LEN`]), so the length always fits.
/// Splits signed bytes into the body and the Ed25519 signature that ends them.
///
/// # Errors
/// [`E2eError::Truncated`] when there are fewer bytes than a signature.
pub(crate) fn split_signature<'a>(what: &'static str, signed: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), E2eError> {
    let body_len = signed.len().checked_sub(SIGNATURE_LEN).ok_or(E2eError::Truncated {
        what,
        needed: SIGNATURE_LEN,
        len: signed.len(),
    })?;
    Ok(signed.split_at(body_len))
}

pub(crate) fn put_id(out: &mut Vec<u8>, id: &str) {
    // Ids are checked at construction to be 1..=64 bytes; saturate rather than wrap regardless.
    out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(id.as_bytes());
}

/// A cursor over peer bytes that refuses to read past the end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    what: &'static str,
    rest: &'a [u8],
    total: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Self { what, rest: bytes, total: bytes.len() }
    }

    fn truncated(&self, n: usize) -> E2eError {
        let consumed = self.total - self.rest.len();
        E2eError::Truncated { what: self.what, needed: consumed.saturating_add(n), len: self.total }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], E2eError> {
        if self.rest.len() < n {
            return Err(self.truncated(n));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], E2eError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, E2eError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, E2eError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, E2eError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, E2eError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads the leading format-version byte and refuses anything but [`super::FORMAT_V1`].
    pub(crate) fn version(&mut self) -> Result<(), E2eError> {
        match self.u8()? {
            super::FORMAT_V1 => Ok(()),
            found => Err(E2eError::UnknownVersion { what: self.what, found }),
        }
    }

    fn id_str(&mut self) -> Result<&'a str, E2eError> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| E2eError::InvalidId { what: self.what })
    }

    pub(crate) fn org(&mut self) -> Result<OrgId, E2eError> {
        let what = self.what;
        OrgId::new(self.id_str()?).map_err(|_| E2eError::InvalidId { what })
    }

    pub(crate) fn user(&mut self) -> Result<UserId, E2eError> {
        let what = self.what;
        UserId::new(self.id_str()?).map_err(|_| E2eError::InvalidId { what })
    }

    pub(crate) fn device(&mut self) -> Result<DeviceId, E2eError> {
        let what = self.what;
        DeviceId::new(self.id_str()?).map_err(|_| E2eError::InvalidId { what })
    }

    /// The bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Succeeds only if every byte was read: each structure has exactly one encoding.
    pub(crate) fn finish(self) -> Result<(), E2eError> {
        match self.rest.len() {
            0 => Ok(()),
            extra => Err(E2eError::TrailingBytes { what: self.what, extra }),
        }
    }
}
