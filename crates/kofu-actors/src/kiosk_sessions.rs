//! Open sessions per kiosk on this node, for admission control: a runaway kiosk may not
//! hold more than a few sessions at once (each holds a card lock and memory for the
//! idle timeout). Every session a shard host holds carries a `SessionSlot`; dropping the
//! slot (the host forgets the session, or the host itself stops) gives it back, so no
//! path can leak a count. Memory follows the kiosks that have sessions open: a kiosk's
//! count is removed when it drops to zero.
//!
//! The count covers the sessions this node owns; in a cluster a kiosk's sessions are
//! spread over the owners of their cards' shards, so the limit holds per node (never
//! refusing a kiosk that is within it cluster-wide).

use foldhash::{HashMap, HashMapExt as _};
use std::hash::{BuildHasher as _, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use kofu_proto::KioskId;

/// Locks split the map so that the hosts of different worker threads rarely meet.
const SHARDS: usize = 16;

#[derive(Debug)]
pub struct KioskSessions {
    limit: u32,
    hasher: RandomState,
    counts: Box<[Mutex<HashMap<KioskId, u32>>]>,
}

impl KioskSessions {
    /// At most `limit` open sessions per kiosk (at least one).
    pub fn new(limit: u32) -> Arc<KioskSessions> {
        Arc::new(KioskSessions {
            limit: limit.max(1),
            hasher: RandomState::new(),
            counts: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    /// No limit (tests of other things).
    pub fn unlimited() -> Arc<KioskSessions> {
        KioskSessions::new(u32::MAX)
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    fn shard(&self, kiosk: &KioskId) -> MutexGuard<'_, HashMap<KioskId, u32>> {
        let i = (self.hasher.hash_one(kiosk) as usize) % SHARDS;
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.counts[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a new session of `kiosk`, unless it already holds `limit`.
    pub fn try_acquire(self: &Arc<Self>, kiosk: &KioskId) -> Option<SessionSlot> {
        let mut counts = self.shard(kiosk);
        let n = counts.entry(kiosk.clone()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        drop(counts);
        Some(self.slot(kiosk))
    }

    /// A slot whatever the count: for a session that exists already (resumed from its
    /// snapshot) or that replaces one of the same kiosk and card.
    pub fn acquire(self: &Arc<Self>, kiosk: &KioskId) -> SessionSlot {
        *self.shard(kiosk).entry(kiosk.clone()).or_insert(0) += 1;
        self.slot(kiosk)
    }

    fn slot(self: &Arc<Self>, kiosk: &KioskId) -> SessionSlot {
        SessionSlot {
            owner: self.clone(),
            kiosk: kiosk.clone(),
        }
    }

    /// Sessions `kiosk` holds here.
    pub fn open(&self, kiosk: &KioskId) -> u32 {
        self.shard(kiosk).get(kiosk).copied().unwrap_or(0)
    }

    /// Kiosks with at least one session here (what the map holds).
    pub fn kiosks(&self) -> usize {
        self.counts
            .iter()
            .map(|m| {
                m.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    fn release(&self, kiosk: &KioskId) {
        let mut counts = self.shard(kiosk);
        if let Some(n) = counts.get_mut(kiosk) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(kiosk);
            }
        }
    }
}

/// One open session of a kiosk, counted until dropped.
#[derive(Debug)]
pub struct SessionSlot {
    owner: Arc<KioskSessions>,
    kiosk: KioskId,
}

impl SessionSlot {
    pub fn kiosk(&self) -> &KioskId {
        &self.kiosk
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.owner.release(&self.kiosk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kiosk(n: u32) -> KioskId {
        KioskId::parse(&format!("K-{n:04}")).expect("valid")
    }

    #[test]
    fn a_kiosk_holds_at_most_its_limit_and_slots_come_back_on_drop() {
        let sessions = KioskSessions::new(3);
        let (a, b) = (kiosk(1), kiosk(2));
        let held: Vec<_> = (0..3).map(|_| sessions.try_acquire(&a)).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(sessions.try_acquire(&a).is_none());
        assert!(
            sessions.try_acquire(&b).is_some(),
            "another kiosk is not affected"
        );
        assert_eq!(sessions.open(&a), 3);
        // A resumed or replacing session is counted even over the limit.
        let extra = sessions.acquire(&a);
        assert_eq!(sessions.open(&a), 4);
        drop(extra);
        drop(held);
        assert_eq!(sessions.open(&a), 0);
        assert!(sessions.try_acquire(&a).is_some());
    }

    #[test]
    fn memory_follows_the_kiosks_with_open_sessions() {
        let sessions = KioskSessions::new(2);
        let slots: Vec<_> = (0..1000)
            .filter_map(|n| sessions.try_acquire(&kiosk(n)))
            .collect();
        assert_eq!(sessions.kiosks(), 1000);
        drop(slots);
        assert_eq!(sessions.kiosks(), 0);
    }
}
