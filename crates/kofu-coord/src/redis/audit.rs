//! Reading the confirmed prints back out of the Redis audit streams for an auditor, and
//! trimming exactly what was handed over. Every shard has its own stream (one Redis
//! Cluster slot each); an export merges them in the order Redis stamped the entries, a
//! page per stream at a time, so memory does not grow with the period exported. What
//! an export handed over is marked per stream; only marked entries are ever trimmed
//! (at once with `--trim`, else by the retention once older than it).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::LazyLock;

use ::redis::aio::ConnectionManager;
use ::redis::{Script, Value};
use futures::{StreamExt as _, TryStreamExt as _};
use kofu_proto::CertKind;

use super::{RedisConn, bad_reply, keys, reply_int, unavailable};
use crate::{AuditRecord, StoreError};

/// Entries read per stream and round trip.
const PAGE: usize = 128;
/// Streams read at once when the export starts.
const PARALLEL: usize = 16;

/// Records what an export handed over from a stream and, when asked, trims it: the
/// stream's export mark (`keys::audit_exported`, the first id not known exported) moves
/// up to what follows the last exported entry, unless the stream holds an entry at or
/// after the mark and older than the export's start (never exported: it stays, and so
/// does everything after it, since `XTRIM` cuts a prefix; the mark does not move).
/// KEYS[1] stream, KEYS[2] its export mark; ARGV[1] the last id before the export's
/// start ("" when it started at 0); ARGV[2] the first id not exported; ARGV[3] `1` to
/// trim. Returns -1 when the stream was left as it was, else the entries trimmed.
static SETTLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local mark = redis.call('GET', KEYS[2])
if ARGV[1] ~= '' then
  local older = redis.call('XRANGE', KEYS[1], mark or '-', ARGV[1], 'COUNT', 1)
  if #older > 0 then
    return -1
  end
end
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local up = true
if mark then
  local mms, mseq = parts(mark)
  local nms, nseq = parts(ARGV[2])
  up = nms > mms or (nms == mms and nseq > mseq)
end
if up then
  redis.call('SET', KEYS[2], ARGV[2])
end
if ARGV[3] == '1' then
  return redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
end
return 0
",
    )
});

/// A stream entry id: milliseconds of the primary's clock, then a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    fn parse(text: &str) -> Option<EntryId> {
        let (ms, seq) = text.split_once('-')?;
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The smallest id after this one.
    fn next(self) -> EntryId {
        match self.seq.checked_add(1) {
            Some(seq) => EntryId { ms: self.ms, seq },
            None => EntryId {
                ms: self.ms + 1,
                seq: 0,
            },
        }
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One confirmed print as its shard's stream holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub shard: u32,
    pub id: EntryId,
    pub record: AuditRecord,
}

/// What an export read: per shard, the last entry handed over (what `trim` may cut).
#[derive(Debug, Clone, Default)]
pub struct Exported {
    pub records: u64,
    last: Vec<(u32, EntryId)>,
}

/// What a trim did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Entries removed from the streams.
    pub entries: u64,
    /// Streams left as they were because they hold entries older than the export.
    pub streams_kept: u32,
}

/// The audit streams of a cluster's Redis.
#[derive(Clone, Debug)]
pub struct AuditStreams {
    conn: RedisConn,
    shard_count: u32,
}

/// One stream being merged: its buffered page and where the next page starts.
struct Cursor {
    page: VecDeque<AuditEntry>,
    /// `None` once the stream has nothing more in range.
    next: Option<EntryId>,
}

impl AuditStreams {
    /// The streams of the cluster whose registry this Redis holds (its shard count is
    /// read from there, so no shard's stream can be missed).
    pub async fn open(conn: RedisConn) -> Result<AuditStreams, StoreError> {
        let mut m = conn.manager();
        let stored: Option<u32> = ::redis::cmd("GET")
            .arg(keys::META_SHARD_COUNT)
            .query_async(&mut m)
            .await
            .map_err(|e| unavailable(&e))?;
        let shard_count = stored.ok_or_else(|| {
            StoreError::Unavailable("no kofu registry in this redis (no shard count)".into())
        })?;
        Ok(AuditStreams { conn, shard_count })
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// Hands every entry stamped in `[since_ms, until_ms)` to `out`, all streams merged
    /// in id order (shard number breaking ties). An error from `out` stops the export.
    pub async fn export<E: From<StoreError>>(
        &self,
        since_ms: u64,
        until_ms: u64,
        mut out: impl FnMut(&AuditEntry) -> Result<(), E>,
    ) -> Result<Exported, E> {
        let mut exported = Exported::default();
        let Some(last_ms) = until_ms.checked_sub(1).filter(|&l| l >= since_ms) else {
            return Ok(exported);
        };
        let end = format!("{last_ms}");
        let start = EntryId {
            ms: since_ms,
            seq: 0,
        };
        let mut cursors: Vec<Cursor> = futures::stream::iter(0..self.shard_count)
            .map(|shard| self.cursor(shard, start, &end))
            .buffered(PARALLEL)
            .try_collect()
            .await?;
        let mut heads = BinaryHeap::new();
        for (shard, c) in cursors.iter().enumerate() {
            if let Some(e) = c.page.front() {
                heads.push(Reverse((e.id, shard)));
            }
        }
        let mut last: Vec<Option<EntryId>> = vec![None; cursors.len()];
        while let Some(Reverse((_, shard))) = heads.pop() {
            let c = &mut cursors[shard];
            let Some(entry) = c.page.pop_front() else {
                continue;
            };
            out(&entry)?;
            exported.records += 1;
            last[shard] = Some(entry.id);
            if c.page.is_empty()
                && let Some(next) = c.next
            {
                *c = self.cursor(entry.shard, next, &end).await?;
            }
            if let Some(e) = cursors[shard].page.front() {
                heads.push(Reverse((e.id, shard)));
            }
        }
        exported.last = last
            .into_iter()
            .enumerate()
            .filter_map(|(shard, id)| Some((u32::try_from(shard).ok()?, id?)))
            .collect();
        Ok(exported)
    }

    /// Marks the entries an export handed over as exported (the retention may trim
    /// them once older than it) and removes them from each stream at once; with them
    /// only entries before `since_ms` that an earlier export handed over (and the
    /// export read every entry after it up to its last one: ids only grow). A stream
    /// that still holds entries older than `since_ms` that no export handed over is
    /// left whole.
    pub async fn trim(&self, exported: &Exported, since_ms: u64) -> Result<Trimmed, StoreError> {
        self.settle(exported, since_ms, true).await
    }

    /// Marks the entries an export handed over as exported without removing them: the
    /// audit retention trims them once older than it (and never an entry not marked).
    /// As [`AuditStreams::trim`], a stream holding older entries that no export handed
    /// over is left unmarked (counted in `streams_kept`).
    pub async fn mark(&self, exported: &Exported, since_ms: u64) -> Result<Trimmed, StoreError> {
        self.settle(exported, since_ms, false).await
    }

    async fn settle(
        &self,
        exported: &Exported,
        since_ms: u64,
        trim: bool,
    ) -> Result<Trimmed, StoreError> {
        let before = since_ms.checked_sub(1).map(|ms| ms.to_string());
        let mut trimmed = Trimmed::default();
        let mut m = self.conn.manager();
        for &(shard, last) in &exported.last {
            let reply: Value = SETTLE_SCRIPT
                .key(keys::audit(shard))
                .key(keys::audit_exported(shard))
                .arg(before.as_deref().unwrap_or(""))
                .arg(last.next().to_string())
                .arg(if trim { "1" } else { "0" })
                .invoke_async(&mut m)
                .await
                .map_err(|e| unavailable(&e))?;
            match reply_int(&reply) {
                Some(-1) => trimmed.streams_kept += 1,
                Some(n) if n >= 0 => trimmed.entries += n.unsigned_abs(),
                _ => return Err(bad_reply("audit trim")),
            }
        }
        Ok(trimmed)
    }

    /// A page of `shard`'s stream from `from` (inclusive) up to `end`.
    async fn cursor(&self, shard: u32, from: EntryId, end: &str) -> Result<Cursor, StoreError> {
        let mut m: ConnectionManager = self.conn.manager();
        let reply: Value = ::redis::cmd("XRANGE")
            .arg(keys::audit(shard))
            .arg(from.to_string())
            .arg(end)
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut m)
            .await
            .map_err(|e| unavailable(&e))?;
        let Value::Array(items) = reply else {
            return Err(bad_reply("XRANGE"));
        };
        let full = items.len() == PAGE;
        let page = items
            .iter()
            .map(|item| entry(shard, item))
            .collect::<Result<VecDeque<_>, _>>()?;
        let next = if full {
            page.back().map(|e| e.id.next())
        } else {
            None
        };
        Ok(Cursor { page, next })
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// A stream entry back into the record it was written from; an entry that does not
/// parse fails the export (an auditor's file must never silently lack a print).
fn entry(shard: u32, item: &Value) -> Result<AuditEntry, StoreError> {
    let bad = || StoreError::Unavailable(format!("unreadable audit entry in shard {shard}"));
    let Value::Array(parts) = item else {
        return Err(bad());
    };
    let [id, Value::Array(fields)] = parts.as_slice() else {
        return Err(bad());
    };
    let id = text(id).and_then(EntryId::parse).ok_or_else(bad)?;
    let bad = || StoreError::Unavailable(format!("unreadable audit entry {id} in shard {shard}"));
    let get = |name: &str| -> Result<String, StoreError> {
        fields
            .chunks(2)
            .find(|kv| kv.first().and_then(text) == Some(name))
            .and_then(|kv| kv.get(1).and_then(text))
            .map(str::to_owned)
            .ok_or_else(bad)
    };
    let kind = get("kind")?;
    let kind = CertKind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind)
        .ok_or_else(bad)?;
    let record = AuditRecord {
        session_id: get("session_id")?,
        job_id: get("job_id")?,
        serial: get("serial")?,
        kiosk_id: get("kiosk_id")?,
        card_digest: get("card_digest")?,
        kind,
        copies: get("copies")?.parse().map_err(|_| bad())?,
        charged_yen: get("charged_yen")?.parse().map_err(|_| bad())?,
        record_version: get("record_version")?.parse().map_err(|_| bad())?,
        printed_at: get("printed_at")?,
    };
    Ok(AuditEntry { shard, id, record })
}

#[cfg(test)]
mod tests {
    use super::EntryId;

    #[test]
    fn entry_ids_parse_order_and_step() {
        let a = EntryId::parse("1764576000000-3").expect("id");
        assert_eq!(a.to_string(), "1764576000000-3");
        assert!(a < EntryId::parse("1764576000000-4").expect("id"));
        assert!(a < EntryId::parse("1764576000001-0").expect("id"));
        assert_eq!(a.next().to_string(), "1764576000000-4");
        let top = EntryId {
            ms: 5,
            seq: u64::MAX,
        };
        assert_eq!(top.next(), EntryId { ms: 6, seq: 0 });
        for bad in ["", "1", "a-1", "1-", "-1", "1-2-3"] {
            assert!(EntryId::parse(bad).is_none(), "{bad}");
        }
    }
}
