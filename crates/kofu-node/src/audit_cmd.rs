//! `kofu audit export`: the confirmed prints of a period as JSON lines an auditor can
//! take away (card digests only, the audit record's fields), from a cluster's Redis
//! audit streams or an embedded node's audit file; with `--trim`, what was handed over
//! is then removed from the streams, and nothing else.

use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgGroup, Args, Subcommand};
use kofu_coord::AuditRecord;
use kofu_coord::redis::{AuditStreams, ConnectOptions, connect_with};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write the confirmed prints of a period as JSON lines.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["redis", "audit_file"])))]
pub struct ExportArgs {
    /// First instant exported (RFC 3339, e.g. `2026-12-01T00:00:00Z`), inclusive.
    #[arg(long, value_parser = instant)]
    pub since: OffsetDateTime,
    /// End of the period (RFC 3339), exclusive; default: now.
    #[arg(long, value_parser = instant)]
    pub until: Option<OffsetDateTime>,
    /// Read the audit streams of this cluster's Redis (never printed: it may hold a
    /// password). Records are selected by the time Redis stamped them (the entry id).
    #[arg(long)]
    pub redis: Option<String>,
    /// CA (PEM) of the Redis servers' certificates, for a `rediss` URL.
    #[arg(long, env = "KOFU_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Read an embedded node's audit file (`KOFU_AUDIT_FILE`). Records are selected by
    /// their `printed_at`, in the order the node wrote them.
    #[arg(long)]
    pub audit_file: Option<PathBuf>,
    /// Write here (synced to disk before any trim) instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// After the export is written, remove the exported entries from the Redis streams
    /// (`XTRIM MINID` up to the last one exported). A stream that still holds entries
    /// older than `--since` that no export handed over is left whole. Without it, an
    /// export to `--out` marks what it wrote as exported, and the audit retention
    /// removes it once older than the retention; nothing not exported is ever removed.
    #[arg(long)]
    pub trim: bool,
}

fn instant(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| "expected an RFC 3339 time, e.g. 2026-12-01T00:00:00Z".to_owned())
}

fn unix_ms(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::Export(args) = cmd;
    if args.until.is_some_and(|until| until < args.since) {
        eprintln!("kofu: invalid arguments: --until is before --since");
        return Ok(ExitCode::from(2));
    }
    let until = args.until.unwrap_or_else(OffsetDateTime::now_utc);
    if args.trim && args.redis.is_none() {
        // The file is the embedded node's record of truth: kofu never cuts it.
        eprintln!("kofu: invalid arguments: --trim applies to the Redis audit streams only");
        return Ok(ExitCode::from(2));
    }
    let mut out = Output::open(args.out.as_deref())?;
    let summary = match (&args.redis, &args.audit_file) {
        (Some(url), _) => from_redis(url, &args, until, &mut out),
        (None, Some(path)) => from_file(path, args.since, until, &mut out),
        (None, None) => Err(anyhow::anyhow!("give --redis URL or --audit-file FILE")),
    };
    match summary {
        Ok(summary) => {
            eprintln!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // A partial export must not pass for a whole one (a finished one stays,
            // whatever happened to the trim after it).
            if let Some(path) = args.out.as_ref().filter(|_| !out.done) {
                let _ = std::fs::remove_file(path);
            }
            Err(e)
        }
    }
}

/// Where the lines go; `finish` makes them durable before anything is trimmed.
struct Output {
    w: BufWriter<Box<dyn Write>>,
    file: Option<File>,
    /// Every line is written and synced.
    done: bool,
}

impl Output {
    fn open(path: Option<&Path>) -> anyhow::Result<Output> {
        Ok(match path {
            Some(path) => {
                let file = File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                let sync = file.try_clone()?;
                Output {
                    w: BufWriter::new(Box::new(file)),
                    file: Some(sync),
                    done: false,
                }
            }
            None => Output {
                w: BufWriter::new(Box::new(std::io::stdout().lock())),
                file: None,
                done: false,
            },
        })
    }

    fn line(&mut self, record: &AuditRecord) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.w, record)?;
        self.w.write_all(b"\n")
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.w.flush()?;
        if let Some(file) = &self.file {
            file.sync_all()?;
        }
        self.done = true;
        Ok(())
    }
}

/// An export error: the output failed, or Redis did.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] kofu_coord::StoreError),
}

fn from_redis(
    url: &str,
    args: &ExportArgs,
    until: OffsetDateTime,
    out: &mut Output,
) -> anyhow::Result<String> {
    let (since_ms, until_ms) = (unix_ms(args.since), unix_ms(until));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let ca_pem = match &args.redis_ca_file {
            Some(path) => Some(
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            ),
            None => None,
        };
        let conn = connect_with(url, &ConnectOptions { ca_pem }).await?;
        let streams = AuditStreams::open(conn).await?;
        let exported = streams
            .export(since_ms, until_ms, |e| {
                out.line(&e.record).map_err(ExportError::from)
            })
            .await?;
        out.finish().map_err(ExportError::from)?;
        let mut summary = format!(
            "exported {} confirmed prints from {} audit streams",
            exported.records,
            streams.shard_count()
        );
        // Handed over: with --trim removed now; written to a file, marked for the
        // retention to remove later. A look at standard output hands nothing over.
        let (settled, what) = if args.trim {
            (Some(streams.trim(&exported, since_ms).await?), "trimmed")
        } else if args.out.is_some() {
            (Some(streams.mark(&exported, since_ms).await?), "marked exported")
        } else {
            (None, "")
        };
        if let Some(settled) = settled {
            if args.trim {
                summary.push_str(&format!("; trimmed {} entries", settled.entries));
            }
            if settled.streams_kept > 0 {
                summary.push_str(&format!(
                    "; {} streams not {what}: they hold entries older than --since that no export handed over (export from earlier)",
                    settled.streams_kept
                ));
            }
        }
        Ok(summary)
    })
}

fn from_file(
    path: &Path,
    since: OffsetDateTime,
    until: OffsetDateTime,
    out: &mut Output,
) -> anyhow::Result<String> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut records = 0u64;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.is_empty() {
            continue;
        }
        // A line's content is never quoted: it holds kiosk and session ids only, but
        // a damaged file could hold anything.
        let record: AuditRecord = serde_json::from_str(&line).map_err(|_| {
            anyhow::anyhow!("{}: line {}: not an audit record", path.display(), n + 1)
        })?;
        let at = OffsetDateTime::parse(&record.printed_at, &Rfc3339)
            .map_err(|_| anyhow::anyhow!("{}: line {}: bad printed_at", path.display(), n + 1))?;
        if at >= since && at < until {
            out.line(&record)?;
            records += 1;
        }
    }
    out.finish()?;
    Ok(format!(
        "exported {records} confirmed prints from the audit file"
    ))
}
