//! The in-memory twin of the RocksDB store, for tests of everything above the storage seam.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::StoreError;
use super::kv::{Cf, KvBackend, KvPair, KvWrite};

/// Every column family's pairs in one ordered map, keyed by (column family, key).
type Maps = BTreeMap<(Cf, Vec<u8>), Vec<u8>>;

/// Ordered maps per column family behind one mutex. Tests only: it never persists.
#[derive(Debug, Default)]
pub struct MemoryStore {
    maps: Mutex<Maps>,
    fail_writes: AtomicBool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later write fail, as a dying disk would.
    pub fn fail_writes(&self) {
        self.fail_writes.store(true, Ordering::SeqCst);
    }

    /// Lets writes succeed again after [`Self::fail_writes`]: a disk that came back (a restart
    /// on a repaired disk, in the simulation).
    pub fn heal_writes(&self) {
        self.fail_writes.store(false, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        // A panic while holding the lock cannot leave the map half-written: every write is a
        // single insert or remove.
        self.maps.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl KvBackend for MemoryStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(&(cf, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        start: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        let maps = self.lock();
        let matching = |(k, v): (&(Cf, Vec<u8>), &Vec<u8>)| {
            (k.0 == cf && k.1.starts_with(prefix)).then(|| (k.1.clone(), v.clone()))
        };
        let from = (cf, start.to_vec());
        let out = if reverse {
            maps.range((cf, prefix.to_vec())..=from).rev().map_while(matching).take(limit).collect()
        } else {
            maps.range(from..).map_while(matching).take(limit).collect()
        };
        Ok(out)
    }

    fn write(&self, writes: Vec<KvWrite>, _sync: bool) -> Result<(), StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Poisoned("injected write failure".into()));
        }
        let mut maps = self.lock();
        for (cf, key, value) in writes {
            match value {
                Some(value) => maps.insert((cf, key), value),
                None => maps.remove(&(cf, key)),
            };
        }
        Ok(())
    }

    fn corrupt(&self, cf: Cf, reason: String) -> StoreError {
        StoreError::Corrupt { path: "<memory>".into(), cf: cf.name(), reason }
    }
}
