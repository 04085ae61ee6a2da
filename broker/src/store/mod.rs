//! Durable state. RocksDB is used only inside [`rocks`]; nothing else names a rocksdb type.

mod rocks;

pub use rocks::{RocksStore, StoreError};
