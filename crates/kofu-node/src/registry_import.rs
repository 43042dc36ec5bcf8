//! `kofu registry import --redis URL FILE`: a registry file (`docs/registry-format.md`)
//! into a cluster's Redis. The file is read twice from one open handle: first checked
//! whole (a bad line refuses the file, naming the line and the field, and nothing is
//! written), then imported a batch at a time while the next batch is parsed on another
//! thread. Only records the file changes are written, each as a new version; the
//! replicas acknowledge each batch once (Sentinel `WAIT`). Then the registry is labelled
//! `import:<digest of the file>`, which nodes started without a fixture seed accept.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Seek as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use kofu_coord::ImportStats;
use kofu_coord::redis::{
    ConnectOptions, IMPORT_LABEL_PREFIX, RedisRegistry, connect_with, is_sentinel,
};
use kofu_core::records::ResidentRecord;
use kofu_core::registry_file::{LineError, Reader};
use sha2::{Digest as _, Sha256};

/// Records per pipeline: large enough that round trips do not dominate, small enough
/// that a batch's `WAIT` comes often and a pipeline stays a few hundred kilobytes.
const BATCH: usize = 1_000;
/// Parsed batches waiting for Redis: the parser runs ahead by this much at most.
const AHEAD: usize = 4;

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

/// What one pass over the file found.
struct Pass {
    records: usize,
    digest: [u8; 32],
}

/// Reads every line of `file` from its start, handing each record to `each`; stops at
/// the first bad line.
fn pass(
    file: &mut File,
    mut each: impl FnMut(ResidentRecord) -> anyhow::Result<()>,
) -> anyhow::Result<Result<Pass, LineError>> {
    file.rewind()?;
    let mut input = BufReader::with_capacity(1 << 20, &mut *file);
    let mut reader = Reader::new();
    let mut sha = Sha256::new();
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        sha.update(&line);
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        match reader.line_bytes(text) {
            Ok(Some(record)) => each(record)?,
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(Pass {
        records: reader.records(),
        digest: sha.finalize().into(),
    }))
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
    let checked = match pass(&mut file, |_| Ok(()))? {
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
    checked: &Pass,
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
    let parser = std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(BATCH);
        let read = pass(&mut file, |record| {
            batch.push(record);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                tx.blocking_send(full)
                    .map_err(|_| anyhow::anyhow!("import stopped"))?;
            }
            Ok(())
        });
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        read
    });
    let mut stats = ImportStats::default();
    while let Some(batch) = rx.recv().await {
        stats.add(registry.import_batch(&batch).await?);
    }
    let second = parser
        .join()
        .map_err(|_| anyhow::anyhow!("the parser thread failed"))??;
    let unchanged_file =
        matches!(&second, Ok(p) if p.digest == checked.digest && p.records == checked.records);
    if !unchanged_file {
        anyhow::bail!(
            "the registry file changed while it was imported; replace files atomically and import again (records already written are valid and stay)"
        );
    }
    let label = format!(
        "{IMPORT_LABEL_PREFIX}{}",
        &hex::encode(checked.digest)[..16]
    );
    registry.mark_imported(&label).await?;
    Ok((stats, label))
}
