//! The bench's closed-loop drivers: `concurrency` kiosks each running whole sessions back
//! to back for a fixed time, through the replay's session code (so every document is
//! verified exactly as in a replay), and the same client against a trivial endpoint.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use kofu_proto::CertKind;
use kofu_proto::trace::{Action, SessionTrace, Step};
use tokio::time::Instant;

use crate::replay::{self, Config, Shared};
use crate::report::{Collector, Report, ReportMeta};
use kofu_kiosk::{Fixtures, Kiosk, Method};

/// What one bench target achieved.
#[derive(Debug, Clone)]
pub struct Measured {
    pub sessions_per_s: f64,
    pub requests_per_s: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub misdeliveries: u64,
    pub sessions: u64,
}

impl From<&Report> for Measured {
    fn from(r: &Report) -> Measured {
        Measured {
            sessions_per_s: r.sessions_per_s,
            requests_per_s: r.requests_per_s,
            p99_ms: r.latency.p99_ms,
            errors: r.counts.error_requests,
            misdeliveries: r.counts.misdeliveries,
            sessions: r.counts.sessions_completed,
        }
    }
}

fn meta(targets: &[String]) -> ReportMeta {
    ReportMeta {
        trace: "bench (closed loop)".to_owned(),
        targets: targets.to_vec(),
        speed: 1.0,
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// Full residence sessions against kofu, spread over `targets` by kiosk.
pub async fn sessions(
    fx: Arc<Fixtures>,
    targets: Vec<String>,
    concurrency: usize,
    run_for: Duration,
    tls: replay::Tls,
) -> anyhow::Result<Measured> {
    let client = replay::client(&targets, TIMEOUT, &tls)?;
    let issuer = replay::issuer_key(&client).await?;
    let usable: Arc<Vec<u32>> = Arc::new(
        (0..fx.cards.len() as u32)
            .filter(|&i| fx.cards[i as usize].usable())
            .collect(),
    );
    anyhow::ensure!(
        usable.len() >= concurrency,
        "fewer usable cards than kiosks"
    );
    let kiosks = fx.kiosks.len();
    let config = Config {
        targets: targets.clone(),
        speed: 1.0,
        fetch_budget: TIMEOUT,
        request_timeout: TIMEOUT,
        spread: false,
        patience: None,
        tls,
    };
    let shared = Arc::new(Shared::new(fx, &client, issuer, config));
    let deadline = shared.origin + run_for;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (shared, usable) = (shared.clone(), usable.clone());
        tasks.push(tokio::spawn(async move {
            // Worker w owns cards w, w+C, w+2C... of the usable ones: never two sessions
            // on one card.
            let own: Vec<u32> = usable
                .iter()
                .skip(w)
                .step_by(concurrency)
                .copied()
                .collect();
            let mut n = 0usize;
            while Instant::now() < deadline {
                let step = |action| Step { at_us: 0, action };
                let trace = SessionTrace {
                    start_us: shared.origin.elapsed().as_micros() as u64,
                    kiosk: (w % kiosks) as u32,
                    card: own[n % own.len()],
                    steps: vec![
                        step(Action::Create),
                        step(Action::Auth { valid: true }),
                        step(Action::Job {
                            kind: CertKind::Residence,
                            copies: 1,
                        }),
                        step(Action::Fetch { wait_ms: 10_000 }),
                        step(Action::Printed),
                        step(Action::Close),
                    ],
                };
                shared.with(|c| c.counts.sessions_started += 1);
                replay::session::run(&shared, w, &trace).await;
                n += 1;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = shared.origin.elapsed();
    let report = shared.with(|c| c.report(0, elapsed, meta(&targets)));
    Ok(Measured::from(&report))
}

/// The HTTP ceiling: a trivial actix-web endpoint (every request answered `200 {}`),
/// driven by the same client with the same six requests per session.
pub async fn ceiling(concurrency: usize, run_for: Duration) -> anyhow::Result<Measured> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sys = actix_rt::System::new();
        sys.block_on(async move {
            let server = HttpServer::new(|| {
                App::new().default_service(web::to(|| async {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body("{}")
                }))
            })
            .workers(2)
            .disable_signals()
            .bind("127.0.0.1:0");
            let server = match server {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let addr = server.addrs()[0];
            let running = server.run();
            let _ = tx.send(Ok((addr, running.handle())));
            let _ = running.await;
        });
    });
    let (addr, handle) = rx
        .recv()?
        .map_err(|e| anyhow::anyhow!("ceiling server: {e}"))?;
    let base = format!("http://{addr}");
    let client = replay::client(
        std::slice::from_ref(&base),
        TIMEOUT,
        &replay::Tls::default(),
    )?;
    let collector = Arc::new(Mutex::new(Collector::default()));
    let origin = Instant::now();
    let deadline = origin + run_for;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, collector, base) = (client.clone(), collector.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let calls: [(Method, &str, &'static str); 6] = [
                (Method::POST, "/v1/sessions", "create"),
                (Method::POST, "/v1/sessions/s/auth", "auth"),
                (Method::POST, "/v1/sessions/s/jobs", "job"),
                (Method::GET, "/v1/sessions/s/jobs/j/document", "fetch"),
                (Method::POST, "/v1/sessions/s/jobs/j/printed", "printed"),
                (Method::DELETE, "/v1/sessions/s", "close"),
            ];
            while Instant::now() < deadline {
                for (method, path, step) in &calls {
                    let t = Instant::now();
                    let url = format!("{base}{path}");
                    let body = Some(b"{}".to_vec());
                    let r = client
                        .request(method.clone(), &url, Some("Bearer x"), body)
                        .await;
                    let ok = (200..300).contains(&r.status);
                    let mut c = collector.lock().unwrap_or_else(|e| e.into_inner());
                    c.request(
                        step,
                        t.elapsed(),
                        origin.elapsed(),
                        (!ok).then(|| format!("{step} failed")),
                    );
                }
                let mut c = collector.lock().unwrap_or_else(|e| e.into_inner());
                c.completed(origin.elapsed());
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = origin.elapsed();
    handle.stop(true).await;
    let c = collector.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Measured::from(&c.report(0, elapsed, meta(&[base]))))
}

/// Opens `n` idle sessions (create only) as fast as `concurrency` allows; how many opened.
pub async fn open_idle(
    fx: &Fixtures,
    api: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<usize> {
    let client = replay::client(&[api.to_owned()], TIMEOUT, &replay::Tls::default())?;
    let usable: Vec<usize> = fx.ordinary_indices().take(n).collect();
    anyhow::ensure!(
        usable.len() == n,
        "the idle population has only {} usable cards",
        usable.len()
    );
    let jobs: Vec<(Kiosk, String)> = usable
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let kiosk = client.kiosk(&fx.kiosks[i % fx.kiosks.len()]);
            (kiosk, fx.cards[c].card_id().to_owned())
        })
        .collect();
    let jobs = Arc::new(Mutex::new(jobs));
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (jobs, opened) = (jobs.clone(), opened.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some((kiosk, card_id)) = next else { break };
                if kiosk.create_session(&card_id).await.is_ok() {
                    opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(opened.load(std::sync::atomic::Ordering::Relaxed))
}
