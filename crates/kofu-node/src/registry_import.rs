//! `kofu registry import --redis URL FILE`: a registry file (`docs/registry-format.md`)
//! into a cluster's Redis. The file is read twice from one open handle, a block of
//! lines at a time with every core checking lines (`registry_blocks.rs`): first checked
//! whole (a bad line refuses the file, naming the line and the field, and nothing is
//! written), keeping each block's digest; then imported, each block written only if its
//! bytes are the ones checked, several batches in flight on the connection while the
//! next block is parsed. Only records the file changes are written, each as a new
//! version; the replicas acknowledge each batch once (Sentinel `WAIT`). Then the registry
//! is labelled `import:<digest of the file>`, which nodes started without a fixture seed
//! accept.

use std::fs::File;
use std::io::Seek as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use futures::{StreamExt as _, TryStreamExt as _};
use kofu_coord::ImportStats;
use kofu_coord::redis::{
    ConnectOptions, IMPORT_LABEL_PREFIX, RedisRegistry, connect_with, is_sentinel,
};
use kofu_core::records::ResidentRecord;
use kofu_core::registry_file::{LineError, Reader};
use sha2::{Digest as _, Sha256};

use crate::registry_blocks::{Blocks, check_block};

/// Records per pipeline: large enough that round trips do not dominate, small enough
/// that a batch's `WAIT` comes often and a pipeline stays a few hundred kilobytes.
const BATCH: usize = 1_000;
/// Batches sent and not yet answered: Redis works on one while the others travel and
/// the importer plans the next.
const IN_FLIGHT: usize = 4;
/// Parsed batches waiting for Redis: the parser runs ahead by this much at most.
const AHEAD: usize = 8;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Redis URL of the cluster (never printed: it may hold a password).
    #[arg(long, env = "KOFU_REDIS_URL")]
    pub redis: String,
    /// The registry file: JSON lines, one resident record per line.
    pub file: PathBuf,
    #[arg(long, env = "KOFU_SHARD_COUNT", default_value_t = kofu_proto::DEFAULT_SHARD_COUNT)]
    pub shard_count: u32,
    /// CA (PEM) of the Redis servers' certificates, for a `rediss` URL.
    #[arg(long, env = "KOFU_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
}

/// What the check of the whole file found.
struct Checked {
    records: usize,
    digest: [u8; 32],
    /// Each block's SHA-256, in order: the import writes a block only if it is the same.
    blocks: Vec<[u8; 32]>,
}

/// The SHA-256 of `block` while its lines are checked.
fn checked_block<T: Send>(
    reader: &mut Reader,
    block: &[u8],
    keep: impl Fn(ResidentRecord) -> T + Sync + Send,
) -> ([u8; 32], Result<Vec<T>, LineError>) {
    rayon::join(
        || Sha256::digest(block).into(),
        || check_block(reader, block, false, keep),
    )
}

/// Checks every line of `file` from its start; stops at the first bad line.
fn check(file: &mut File) -> anyhow::Result<Result<Checked, LineError>> {
    file.rewind()?;
    let mut blocks = Blocks::new(&mut *file);
    let mut reader = Reader::new();
    let mut digests = Vec::new();
    while let Some(block) = blocks.next_block()? {
        let (digest, checked) = checked_block(&mut reader, &block, |_| ());
        if let Err(e) = checked {
            return Ok(Err(e));
        }
        digests.push(digest);
    }
    Ok(Ok(Checked {
        records: reader.records(),
        digest: blocks.digest(),
        blocks: digests,
    }))
}

/// Reads `file` again and hands its records to `each` a batch at a time; fails if a
/// block is not the one checked (the file changed meanwhile), before handing it on.
fn batches(
    file: &mut File,
    expected: &[[u8; 32]],
    records_expected: usize,
    mut each: impl FnMut(Vec<ResidentRecord>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let changed = || {
        anyhow::anyhow!(
            "the registry file changed while it was imported; replace files atomically and import again (records already written are valid and stay)"
        )
    };
    file.rewind()?;
    let mut blocks = Blocks::new(&mut *file);
    let mut reader = Reader::new();
    let mut n = 0;
    while let Some(block) = blocks.next_block()? {
        // The bytes first: only a block checked whole before is read with the
        // cheaper check (no curve check of the card keys) and written.
        let digest: [u8; 32] = Sha256::digest(&block).into();
        if expected.get(n) != Some(&digest) {
            return Err(changed());
        }
        n += 1;
        let mut records = check_block(&mut reader, &block, true, |r| r).map_err(|_| changed())?;
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(BATCH));
            each(std::mem::replace(&mut records, rest))?;
        }
    }
    if n != expected.len() || reader.records() != records_expected {
        return Err(changed());
    }
    Ok(())
}

fn refused(path: &Path, e: &LineError) -> ExitCode {
    eprintln!(
        "kofu: registry file {} refused, nothing imported: {e}",
        path.display()
    );
    ExitCode::from(2)
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    if !(1..=65_536).contains(&args.shard_count) {
        eprintln!("kofu: invalid configuration: --shard-count must be between 1 and 65536");
        return Ok(ExitCode::from(2));
    }
    let started = Instant::now();
    let path = args.file.clone();
    let mut file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let checked = match check(&mut file)? {
        Ok(p) => p,
        Err(e) => return Ok(refused(&path, &e)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stats, label) = runtime.block_on(import(&args, file, &checked))?;
    let seconds = started.elapsed().as_secs_f64();
    let memory = peak_rss_mib().map_or_else(String::new, |m| format!("; peak memory {m} MiB"));
    println!(
        "imported {} records from {} ({stats}) in {seconds:.1} s; registry {label}{memory}",
        stats.total(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn import(
    args: &ImportArgs,
    mut file: File,
    checked: &Checked,
) -> anyhow::Result<(ImportStats, String)> {
    let ca_pem = match &args.redis_ca_file {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let conn = connect_with(&args.redis, &ConnectOptions { ca_pem }).await?;
    // Through Sentinel, each batch is acknowledged only once a replica holds it.
    let replicas = u32::from(is_sentinel(&args.redis));
    let registry = RedisRegistry::new(conn, args.shard_count).with_replicas(replicas);
    registry.check_importable().await?;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<ResidentRecord>>(AHEAD);
    let expected = checked.blocks.clone();
    let records = checked.records;
    let parser = std::thread::spawn(move || {
        batches(&mut file, &expected, records, |batch| {
            tx.blocking_send(batch)
                .map_err(|_| anyhow::anyhow!("import stopped"))
        })
    });
    let stats = futures::stream::poll_fn(|cx| rx.poll_recv(cx))
        .map(|batch| {
            let registry = &registry;
            async move { registry.import_batch(&batch).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_fold(ImportStats::default(), |mut all, one| async move {
            all.add(one);
            Ok(all)
        })
        .await;
    // On a Redis error the receiver is gone by now: the parser stops at its next batch.
    let read = parser
        .join()
        .map_err(|_| anyhow::anyhow!("the parser thread failed"))?;
    let stats = stats?;
    read?;
    let label = format!(
        "{IMPORT_LABEL_PREFIX}{}",
        &hex::encode(checked.digest)[..16]
    );
    registry.mark_imported(&label).await?;
    Ok((stats, label))
}
