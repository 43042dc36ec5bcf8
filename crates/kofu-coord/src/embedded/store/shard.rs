//! One shard of the embedded store: its epoch, serial, card locks, snapshots (with the
//! listing of open sessions and their expiry) and the per-session keys that make a
//! print count once. Everything a session leaves behind goes when its snapshot does, so
//! memory follows the sessions open, not those served.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashSet};

use kofu_proto::SessionId;

use crate::Loaded;
use tokio::time::Instant;

/// When an entry expires; the counter keeps two entries of one instant apart.
type ExpiryKey = (Instant, u64);

#[derive(Debug)]
struct Snapshot {
    bytes: Vec<u8>,
    /// Listed among the shard's open sessions (a put, not a tombstone).
    open: bool,
    expiry: Option<ExpiryKey>,
    written: Instant,
}

#[derive(Debug, Default)]
pub(super) struct ShardState {
    pub(super) epoch: u64,
    pub(super) serial: u64,
    /// card digest → (holding session, kiosk)
    pub(super) card_locks: HashMap<[u8; 32], (SessionId, String)>,
    snapshots: HashMap<SessionId, Snapshot>,
    /// The open sessions by id text: a listing's order, and its cursor.
    open: BTreeMap<String, SessionId>,
    expiries: BTreeMap<ExpiryKey, SessionId>,
    expiry_seq: u64,
    /// Per session, the `session/job` pairs already audited.
    audited: HashMap<SessionId, HashSet<String>>,
}

impl ShardState {
    pub(super) fn new(epoch: u64) -> ShardState {
        ShardState {
            epoch,
            ..ShardState::default()
        }
    }

    /// Drops every snapshot (and what goes with it) whose time has passed.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(entry) = self.expiries.first_entry() {
            if entry.key().0 > now {
                return;
            }
            let session = entry.remove();
            if let Some(snap) = self.snapshots.get_mut(&session) {
                snap.expiry = None;
            }
            self.end(&session);
        }
    }

    pub(super) fn snapshot(&self, session: &SessionId, now: Instant) -> Option<Loaded> {
        self.snapshots.get(session).map(|s| Loaded {
            bytes: s.bytes.clone(),
            written_ago: now.saturating_duration_since(s.written),
        })
    }

    /// Stores `bytes`, listed as open or as a tombstone, until `until` (or forever).
    pub(super) fn put(
        &mut self,
        session: SessionId,
        bytes: Vec<u8>,
        open: bool,
        until: Option<Instant>,
    ) {
        let expiry = until.map(|at| {
            self.expiry_seq += 1;
            (at, self.expiry_seq)
        });
        if let Some(key) = expiry {
            self.expiries.insert(key, session);
        }
        let was_open = self.snapshots.get(&session).is_some_and(|s| s.open);
        let old = self.snapshots.insert(
            session,
            Snapshot {
                bytes,
                open,
                expiry,
                written: Instant::now(),
            },
        );
        if let Some(key) = old.and_then(|s| s.expiry) {
            self.expiries.remove(&key);
        }
        match (was_open, open) {
            (false, true) => {
                self.open.insert(session.to_string(), session);
            }
            (true, false) => {
                self.open.remove(&session.to_string());
            }
            _ => {}
        }
        if !open {
            self.audited.remove(&session);
        }
    }

    /// Forgets the session: snapshot, listing, expiry and audit keys.
    pub(super) fn end(&mut self, session: &SessionId) {
        if let Some(snap) = self.snapshots.remove(session) {
            if let Some(key) = snap.expiry {
                self.expiries.remove(&key);
            }
            if snap.open {
                self.open.remove(&session.to_string());
            }
        }
        self.audited.remove(session);
    }

    /// Whether `member` was audited for `session` before; records it if not.
    pub(super) fn audited_before(&self, session: &SessionId, member: &str) -> bool {
        self.audited
            .get(session)
            .is_some_and(|set| set.contains(member))
    }

    pub(super) fn mark_audited(&mut self, session: SessionId, member: String) {
        self.audited.entry(session).or_default().insert(member);
    }

    /// Up to `limit` open sessions after `after` (by id text), and whether more follow.
    pub(super) fn list(&self, after: &str, limit: usize) -> (Vec<SessionId>, bool) {
        let mut range = self
            .open
            .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .map(|(_, s)| *s);
        let page: Vec<SessionId> = range.by_ref().take(limit.max(1)).collect();
        (page, range.next().is_some())
    }

    pub(super) fn snapshot_count(&self) -> usize {
        self.snapshots.len()
    }

    pub(super) fn audited_sessions(&self) -> usize {
        self.audited.len()
    }
}
