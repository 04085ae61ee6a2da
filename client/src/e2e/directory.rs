//! What this device knows of other devices' published keys, and how it notices changes.
//!
//! The key directory is served by the broker, which is not trusted with keys: a bundle is
//! accepted only with a valid self-signature (§18.4), a bundle older than one already seen is
//! refused (a replay), and two bundles of one version with different keys are refused (the
//! directory is equivocating). A newer bundle with other keys is recorded but reported as
//! [`KeyChange::Changed`], so the app can warn its user: a changed key is never silent. Which
//! keys receive sender keys is decided by the signed membership chain, not by this directory.

use std::collections::BTreeMap;

use herald_protocol::e2e::{DeviceAddress, DeviceKeyBundle, PUBLIC_IDENTITY_LEN, PublicIdentity};

use super::EngineError;
use super::wire::{DecodeError, Reader, put_address, put_count};

/// What learning a key bundle told about its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    /// A device this engine had not seen before: worth a "new device" notice.
    NewDevice {
        /// The device.
        device: DeviceAddress,
        /// Its keys.
        identity: Box<PublicIdentity>,
        /// Its bundle version.
        key_version: u64,
    },
    /// A known device now publishes other keys: warn the user (the device was reinstalled, or
    /// someone is impersonating it).
    Changed {
        /// The device.
        device: DeviceAddress,
        /// The keys known until now.
        old: Box<PublicIdentity>,
        /// The keys now published.
        new: Box<PublicIdentity>,
        /// The new bundle version.
        key_version: u64,
    },
    /// The device's keys are the ones already known.
    Unchanged {
        /// The device.
        device: DeviceAddress,
    },
}

/// One device's published keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// Its keys.
    pub identity: PublicIdentity,
    /// Its bundle version.
    pub key_version: u64,
}

/// user → device → keys, as learned from verified bundles.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    devices: BTreeMap<DeviceAddress, DirectoryEntry>,
}

impl Directory {
    /// Records a verified bundle.
    pub(crate) fn learn(&mut self, bundle: DeviceKeyBundle) -> Result<KeyChange, EngineError> {
        let device = DeviceAddress::new(bundle.org, bundle.user, bundle.device);
        let offered = DirectoryEntry { identity: bundle.identity, key_version: bundle.key_version };
        let Some(known) = self.devices.get(&device).copied() else {
            self.devices.insert(device.clone(), offered);
            return Ok(KeyChange::NewDevice {
                device,
                identity: Box::new(offered.identity),
                key_version: offered.key_version,
            });
        };
        if offered.key_version < known.key_version {
            return Err(EngineError::StaleBundle {
                device: Box::new(device),
                known_version: known.key_version,
                offered_version: offered.key_version,
            });
        }
        if offered.key_version == known.key_version && offered.identity != known.identity {
            return Err(EngineError::ConflictingBundle { device: Box::new(device), key_version: known.key_version });
        }
        self.devices.insert(device.clone(), offered);
        if offered.identity == known.identity {
            Ok(KeyChange::Unchanged { device })
        } else {
            Ok(KeyChange::Changed {
                device,
                old: Box::new(known.identity),
                new: Box::new(offered.identity),
                key_version: offered.key_version,
            })
        }
    }

    pub(crate) fn devices(&self) -> impl Iterator<Item = &DeviceAddress> {
        self.devices.keys()
    }

    pub(crate) fn get(&self, device: &DeviceAddress) -> Option<&DirectoryEntry> {
        self.devices.get(device)
    }

    /// Appends `u32 n || n × (address || u64 key_version || identity (64))`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        put_count(out, self.devices.len());
        for (device, entry) in &self.devices {
            put_address(out, device);
            out.extend_from_slice(&entry.key_version.to_be_bytes());
            out.extend_from_slice(&entry.identity.to_bytes());
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut devices = BTreeMap::new();
        for _ in 0..r.count()? {
            let device = r.address()?;
            let key_version = r.u64()?;
            let identity = read_identity(r)?;
            devices.insert(device, DirectoryEntry { identity, key_version });
        }
        Ok(Self { devices })
    }
}

pub(crate) fn read_identity(r: &mut Reader<'_>) -> Result<PublicIdentity, DecodeError> {
    let bytes = r.array::<PUBLIC_IDENTITY_LEN>()?;
    PublicIdentity::from_bytes(&bytes).map_err(|_| r.error("invalid public identity"))
}
