//! Issue acceptance 3: 2,000 sessions from 200 kiosks, all opened within a few
//! milliseconds, every document verified end to end (I1 no cross-delivery, I3
//! isolation: signature, binding, the names in its bytes; one session in ten's also as
//! `pdftotext` reads them) — once with healthy rendering, once with every third render
//! forced past its deadline so that voided jobs and released documents interleave.

mod blast;
mod report;
mod session;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kofu_proto::verify::IssuerKeys;
use kofu_testkit::suite::RENDER_TIMEOUT_FLAGS;
use kofu_testkit::{Client, Deployment, DeploymentOptions, Fixtures, Kiosk};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::blast::{Paused, blast, create_request, prepare};
use crate::report::Report;
use crate::session::session;

const RESIDENTS: u32 = 2500;
const KIOSKS: usize = 200;
const SESSIONS: usize = 2000;
/// Ten sessions per kiosk: the same kiosk credential is used concurrently, as a store
/// with several printers sharing one credential would.
const PER_KIOSK: usize = SESSIONS / KIOSKS;
/// Hard stop for a whole test (node start included): a hang fails instead of blocking CI.
const TEST_BUDGET: Duration = Duration::from_secs(240);
/// How long one job may take from creation to a final answer before the test calls it lost.
const FETCH_BUDGET: Duration = Duration::from_secs(30);
/// The creates are released together; their send instants must fall within this window.
/// 6–17 ms is measured on the 2-core machine (see `run`), up to 49 ms while builds ran
/// beside the test (load average 10), 68 ms beside a `kofu-load bench` loop (the two
/// blaster threads preempted by its processes); the node is paused meanwhile, so from
/// its side all creates arrive at once whatever this span is. The bound still fails a
/// harness that sends through a client per session (~150 ms on a quiet machine). The
/// span is always printed.
const MAX_CREATE_SPAN: Duration = Duration::from_millis(120);

/// A voided job is fetched again this long after its creation: by then the injected
/// delay has elapsed and a late render would have finished, so a document here would
/// be a released-after-void bug.
const REFETCH_AFTER: Duration = Duration::from_millis(2000);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_sessions_from_two_hundred_kiosks() {
    let report = tokio::time::timeout(TEST_BUDGET, run(&[], false))
        .await
        .expect("the test finished within its budget");
    report.print("healthy rendering");
    report.assert_clean();
    assert_eq!(report.voided, 0, "no job may be voided without faults");
    assert_eq!(
        report.sessions_completed, SESSIONS,
        "every session completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_sessions_with_forced_render_timeouts() {
    let report = tokio::time::timeout(TEST_BUDGET, run(&RENDER_TIMEOUT_FLAGS, true))
        .await
        .expect("the test finished within its budget");
    report.print("forced render timeouts");
    report.assert_clean();
    assert!(report.released > 0, "some documents must be released");
    assert!(
        report.voided > 0,
        "some jobs must time out (every 3rd is delayed)"
    );
    assert_eq!(
        report.sessions_completed, SESSIONS,
        "every session completed"
    );
}

/// Shared, read-only state of the run.
struct Ctx {
    fx: &'static Fixtures,
    issuer: IssuerKeys,
    /// With fault flags a `410 job_voided` is a valid answer; without, it is an error.
    voids_allowed: bool,
}

/// What one session task reports.
#[derive(Debug, Default)]
struct SessionOutcome {
    session_id: Option<String>,
    completed: bool,
    serials: Vec<String>,
    voided: usize,
    misdeliveries: Vec<String>,
    errors: Vec<String>,
}

async fn run(flags: &[&str], voids_allowed: bool) -> Report {
    let started = Instant::now();
    let mut opts = DeploymentOptions::default();
    opts.node.residents = RESIDENTS;
    opts.node.kiosks = KIOSKS as u32;
    opts.node.args = flags.iter().map(|s| (*s).to_owned()).collect();
    // The creates below wait mid-body on purpose, for as long as preparing 2,000
    // connections takes on a busy machine: beyond the node's slow-client body deadline.
    opts.node
        .args
        .extend(["--http-body-timeout-ms".to_owned(), "120000".to_owned()]);
    // Starting a process and reading fixtures block; the runtime has spare workers.
    let deployment = tokio::task::block_in_place(|| Deployment::start(opts));
    let (node, fx) = (deployment.node(0), deployment.fixtures());
    let card_ixs: Vec<usize> = fx.ordinary_indices().take(SESSIONS).collect();
    assert_eq!(card_ixs.len(), SESSIONS, "enough ordinary cards");

    // One client for all kiosks with a pool large enough for every session at once:
    // HTTP/1.1 needs one connection per in-flight request.
    let client = Client::builder()
        .target(&node.api)
        .pool_max_idle_per_host(SESSIONS + 64)
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let kiosks: Vec<Kiosk> = fx.kiosks.iter().map(|cred| client.kiosk(cred)).collect();
    let ctx = Arc::new(Ctx {
        fx,
        issuer: deployment.issuer().clone(),
        voids_allowed,
    });

    // The creates: every connection is opened beforehand and carries its whole create
    // request but the last byte, so the node waits on 2,000 incomplete bodies. Two
    // blaster tasks (one per core) then write the last bytes in a tight loop behind a
    // barrier: no per-session task wake-up, one small syscall per create, while the node
    // is paused so that it neither competes for the two cores nor starts on the first
    // creates before the last are written. Measured on the 2-core box: through reqwest
    // the sends spread over ~150 ms; raw writes with the node running 15–70 ms; with
    // the node paused ~10 ms (about 10 µs per loopback write per core). Everything
    // after the create goes through the kiosk client as usual.
    let mut prepared = JoinSet::new();
    for (i, &card_ix) in card_ixs.iter().enumerate() {
        let host = node.api.trim_start_matches("http://").to_owned();
        let request = create_request(
            &host,
            &kiosks[i / PER_KIOSK],
            ctx.fx.cards[card_ix].card_id(),
        );
        prepared.spawn(async move { (i, prepare(&host, &request).await) });
    }
    let mut readers: Vec<Option<OwnedReadHalf>> = (0..SESSIONS).map(|_| None).collect();
    let mut writers = Vec::with_capacity(SESSIONS);
    let mut report = Report::default();
    while let Some(joined) = prepared.join_next().await {
        match joined {
            Ok((i, Ok((reader, writer)))) => {
                readers[i] = Some(reader);
                writers.push(writer);
            }
            Ok((i, Err(e))) => report.errors.push(format!("session {i}: {e}")),
            Err(e) => report.errors.push(format!("prepare task died: {e}")),
        }
    }
    let (blast_tx, blast_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for (i, card_ix) in card_ixs.into_iter().enumerate() {
        let (ctx, kiosk) = (ctx.clone(), kiosks[i / PER_KIOSK].clone());
        let (reader, rx) = (readers[i].take(), blast_rx.clone());
        tasks.spawn(async move { session(ctx, i, kiosk, card_ix, reader, rx).await });
    }
    let (sent, writers) = {
        let _paused = Paused::new(node.pid());
        blast(writers, &mut report).await
    };
    let _ = blast_tx.send(true);

    let mut serials = HashSet::new();
    let mut sids = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        let out = match joined {
            Ok(out) => out,
            Err(e) => {
                report.errors.push(format!("session task died: {e}"));
                continue;
            }
        };
        if let Some(sid) = out.session_id
            && !sids.insert(sid)
        {
            report.duplicate_sessions += 1;
        }
        for serial in out.serials {
            report.released += 1;
            if !serials.insert(serial) {
                report.duplicate_serials += 1;
            }
        }
        report.voided += out.voided;
        report.sessions_completed += usize::from(out.completed);
        report.misdeliveries.extend(out.misdeliveries);
        report.errors.extend(out.errors);
    }
    // Dropping a write half half-closes its connection: only once every answer was read.
    drop(writers);
    let mut sent = sent;
    sent.sort();
    if let (Some(first), Some(_)) = (sent.first(), sent.last()) {
        let at = |q: usize| sent[(sent.len() - 1) * q / 100].duration_since(*first);
        report.create_span = at(100);
        report.create_quantiles = [at(50), at(90), at(99)];
    }
    report.elapsed = started.elapsed();
    drop(deployment);
    report
}
