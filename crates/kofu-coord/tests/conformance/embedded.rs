//! The embedded backend: a takeover is `bump_epoch`, as a restart at a new epoch would be.

use std::collections::HashMap;
use std::sync::Arc;

use kofu_coord::conformance::Backend;
use kofu_coord::conformance::fixtures::SHARDS;
use kofu_coord::embedded::{AuditSink, EmbeddedRegistry, EmbeddedStore};
use kofu_coord::{AuditRecord, Fence, FencedStore, Registry};
use kofu_core::records::ResidentRecord;
use parking_lot::Mutex;

/// Not 1: a fence of epoch 1 must not pass by accident.
const EPOCH: u64 = 1_000;

pub struct Embedded {
    store: Arc<EmbeddedStore>,
    /// Each shard's current epoch, as its owner would know it.
    epochs: Mutex<HashMap<u32, u64>>,
    registry: Mutex<Option<Arc<EmbeddedRegistry>>>,
}

impl Backend for Embedded {
    async fn start() -> Embedded {
        Embedded {
            store: Arc::new(EmbeddedStore::new(SHARDS, EPOCH, AuditSink::Memory)),
            epochs: Mutex::new(HashMap::new()),
            registry: Mutex::new(None),
        }
    }

    fn store(&self) -> Arc<dyn FencedStore> {
        self.store.clone()
    }

    async fn fence(&self, shard: u32) -> Fence {
        let epoch = *self.epochs.lock().entry(shard).or_insert(EPOCH);
        Fence { shard, epoch }
    }

    async fn take_over(&self, shard: u32) -> Fence {
        let epoch = self.store.bump_epoch(shard).expect("a shard of the store");
        self.epochs.lock().insert(shard, epoch);
        Fence { shard, epoch }
    }

    async fn audit_records(&self) -> Vec<AuditRecord> {
        self.store.audit_records()
    }

    async fn registry(&self, records: Vec<ResidentRecord>) -> Arc<dyn Registry> {
        let registry = Arc::new(EmbeddedRegistry::new(records));
        *self.registry.lock() = Some(registry.clone());
        registry
    }

    async fn registry_again(&self) -> Arc<dyn Registry> {
        self.registry.lock().clone().expect("a registry was made")
    }
}

kofu_coord::conformance_tests!(Embedded);
