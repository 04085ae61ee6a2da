//! Byte encoding for the engine's saved state and for the §18.7/§18.8 structures the engine
//! builds itself: big-endian integers and `id8` ids, read without indexing so that corrupt or
//! hostile bytes become an error, never a panic.

use herald_protocol::e2e::{ChainId, DeviceAddress, FORMAT_V1};
use herald_protocol::{DeviceId, OrgId, UserId};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct DecodeError {
    /// Which structure was being read.
    pub what: &'static str,
    /// What was wrong.
    pub reason: &'static str,
}

/// Appends `id8(id)`: one length byte, then the id's bytes (ids are 1 to 64 bytes).
pub(crate) fn put_id(out: &mut Vec<u8>, id: &str) {
    out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(id.as_bytes());
}

/// Appends `id8(org) || id8(user) || id8(device)`.
pub(crate) fn put_address(out: &mut Vec<u8>, address: &DeviceAddress) {
    put_id(out, address.org.as_str());
    put_id(out, address.user.as_str());
    put_id(out, address.device.as_str());
}

/// Appends `chain_id` exactly as PROTOCOL.md §18.7 lays it out.
pub(crate) fn put_chain_id(out: &mut Vec<u8>, id: &ChainId) {
    put_id(out, id.org.as_str());
    out.extend_from_slice(&id.conversation.to_be_bytes());
    put_id(out, id.sender.as_str());
    put_id(out, id.sender_device.as_str());
    out.extend_from_slice(&id.epoch.to_be_bytes());
}

/// Appends a length-prefixed (u32) byte string.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Appends a u32 count of a collection.
pub(crate) fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

/// A cursor that refuses to read past the end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Self { what, rest: bytes }
    }

    pub(crate) fn error(&self, reason: &'static str) -> DecodeError {
        DecodeError { what: self.what, reason }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(self.error("truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A u32 count, refused when even one-byte items could not fit in what is left: a corrupt
    /// count cannot make the reader allocate.
    pub(crate) fn count(&mut self) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.u32()?).map_err(|_| self.error("count out of range"))?;
        if n > self.rest.len() {
            return Err(self.error("count larger than the input"));
        }
        Ok(n)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(self.u32()?).map_err(|_| self.error("length out of range"))?;
        self.take(n)
    }

    pub(crate) fn version(&mut self) -> Result<(), DecodeError> {
        match self.u8()? {
            FORMAT_V1 => Ok(()),
            _ => Err(self.error("unknown format version")),
        }
    }

    fn id_str(&mut self) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u8()?);
        std::str::from_utf8(self.take(len)?).map_err(|_| self.error("id is not UTF-8"))
    }

    pub(crate) fn org(&mut self) -> Result<OrgId, DecodeError> {
        let s = self.id_str()?;
        OrgId::new(s).map_err(|_| self.error("invalid organisation id"))
    }

    pub(crate) fn user(&mut self) -> Result<UserId, DecodeError> {
        let s = self.id_str()?;
        UserId::new(s).map_err(|_| self.error("invalid user id"))
    }

    pub(crate) fn device(&mut self) -> Result<DeviceId, DecodeError> {
        let s = self.id_str()?;
        DeviceId::new(s).map_err(|_| self.error("invalid device id"))
    }

    pub(crate) fn address(&mut self) -> Result<DeviceAddress, DecodeError> {
        Ok(DeviceAddress::new(self.org()?, self.user()?, self.device()?))
    }

    pub(crate) fn chain_id(&mut self) -> Result<ChainId, DecodeError> {
        Ok(ChainId {
            org: self.org()?,
            conversation: self.u64()?,
            sender: self.user()?,
            sender_device: self.device()?,
            epoch: self.u64()?,
        })
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() { Ok(()) } else { Err(self.error("trailing bytes")) }
    }
}
