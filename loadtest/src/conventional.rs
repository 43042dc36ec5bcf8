//! BENCH-ONLY CODE, NOT A PRODUCT: the conventional design kofu is measured against
//! (issue 13, target (d) of `kofu-load bench`). A stateless actix-web tier that keeps
//! every session, job and document in Redis (MessagePack values with TTLs, one
//! multiplexed connection manager per worker), authenticates cards by their Ed25519
//! signature over the challenge, renders a minimal one-page PDF and signs the binding
//! exactly as API.md specifies, so the load generator verifies its documents the same
//! way it verifies kofu's and cannot tell the two apart.
//!
//! What it deliberately lacks, because that is the point of the comparison: no fencing
//! (two requests on one session race read-modify-write, last writer wins), no `WAIT`
//! for a replica (a state change is acknowledged once the primary has it in memory), no
//! owner per session, no audit stream flushed before a print is acknowledged. Reference
//! data (residents, kiosk credentials) sits in the process's memory as a stateless tier
//! would cache it; the population is the one `kofu fixtures` prints for the same
//! arguments.

mod pdf;
mod steps;
mod store;

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use ed25519_dalek::SigningKey;
use kofu_core::records::ResidentRecord;
use kofu_core::{Population, PopulationSpec};
use kofu_proto::api::{IssuerKeyResponse, KeyStatus, PublishedKey};
use kofu_proto::{ApiError, CardId, ErrorCode};
use redis::aio::ConnectionManager;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

#[derive(Debug, clap::Args)]
pub struct ConventionalArgs {
    /// Kiosk API listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[arg(long)]
    redis_url: String,
    #[arg(long, default_value_t = 1)]
    fixture_seed: u64,
    #[arg(long, default_value_t = 1000)]
    fixture_residents: u32,
    #[arg(long, default_value_t = 20)]
    fixture_kiosks: u32,
    /// HTTP workers (default: one per core, like kofu).
    #[arg(long)]
    workers: Option<usize>,
}

/// Session idle timeout and hard limit (API.md), and how long a document may outlive
/// its last access (never longer than a session can).
pub(crate) const IDLE_S: u64 = 180;
pub(crate) const HARD_LIMIT_MS: u64 = 15 * 60 * 1000;
pub(crate) const DOC_TTL_S: u64 = 15 * 60;

/// What every worker reads and nobody writes: the registry, the kiosk credentials and
/// the issuer key.
pub(crate) struct Reference {
    residents: Vec<ResidentRecord>,
    by_card: HashMap<CardId, usize>,
    /// Kiosk id -> SHA-256 of its secret.
    kiosks: HashMap<String, [u8; 32]>,
    pub(crate) issuer: SigningKey,
    pub(crate) kid: String,
    issuer_json: web::Bytes,
}

impl Reference {
    fn new(seed: u64, residents: u32, kiosks: u32) -> anyhow::Result<Reference> {
        let spec = PopulationSpec {
            seed,
            residents,
            kiosks,
        };
        spec.validate()?;
        let population = Population::generate(&spec);
        let issuer = SigningKey::from_bytes(&kofu_core::issuer_seed(seed));
        let public = issuer.verifying_key();
        let kid = kofu_proto::verify::key_id(&public);
        let public_key = kofu_proto::b64url(public.as_bytes());
        let issuer_json = serde_json::to_vec(&IssuerKeyResponse {
            alg: "ed25519".to_owned(),
            public_key: public_key.clone(),
            kid: kid.clone(),
            keys: vec![PublishedKey {
                kid: kid.clone(),
                public_key,
                status: KeyStatus::Current,
            }],
        })?;
        Ok(Reference {
            by_card: (population.residents.iter().enumerate())
                .map(|(i, r)| (r.card_id.clone(), i))
                .collect(),
            residents: population.residents,
            kiosks: (population.kiosks.iter())
                .map(|k| (k.kiosk_id.as_str().to_owned(), k.secret_hash()))
                .collect(),
            issuer,
            kid,
            issuer_json: issuer_json.into(),
        })
    }

    pub(crate) fn card(&self, card: &CardId) -> Option<u32> {
        self.by_card.get(card).and_then(|&i| u32::try_from(i).ok())
    }

    pub(crate) fn record(&self, index: u32) -> Result<&ResidentRecord, ApiError> {
        (self.residents.get(index as usize)).ok_or(ApiError::new(ErrorCode::Internal))
    }

    /// The kiosk id of a valid `Authorization: Bearer <kiosk_id>.<secret>`.
    pub(crate) fn kiosk(&self, req: &HttpRequest) -> Result<String, ApiError> {
        let refused = ApiError::new(ErrorCode::UnauthorizedKiosk);
        let token = (req.headers().get("authorization"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(refused)?;
        let (kiosk, secret) = token.split_once('.').ok_or(refused)?;
        let want = self.kiosks.get(kiosk).ok_or(refused)?;
        let got: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if bool::from(got.ct_eq(want)) {
            Ok(kiosk.to_owned())
        } else {
            Err(refused)
        }
    }
}

/// One HTTP worker's state: the shared reference data and the worker's own Redis
/// connection manager, opened on first use on the worker's runtime so that replies
/// never cross threads.
pub(crate) struct Worker {
    pub(crate) reference: Arc<Reference>,
    client: redis::Client,
    redis: tokio::sync::OnceCell<ConnectionManager>,
}

impl Worker {
    pub(crate) async fn redis(&self) -> Result<ConnectionManager, ApiError> {
        self.redis
            .get_or_try_init(|| ConnectionManager::new(self.client.clone()))
            .await
            .cloned()
            .map_err(|_| ApiError::new(ErrorCode::Unavailable))
    }
}

/// The error JSON of API.md with its status (and `Retry-After` on `503`).
pub(crate) fn error(e: ApiError) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(e.status())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut answer = HttpResponse::build(status);
    if e.code == ErrorCode::Unavailable {
        answer.insert_header(("Retry-After", "1"));
    }
    answer.json(e)
}

/// Bodies: at most 16 KiB, JSON, no unknown field; every refusal in the API's words.
fn json_config() -> web::JsonConfig {
    use actix_web::error::JsonPayloadError as E;
    web::JsonConfig::default()
        .limit(kofu_proto::MAX_BODY_BYTES)
        .error_handler(|err, _| {
            let code = match err {
                E::Overflow { .. } | E::OverflowKnownLength { .. } => ErrorCode::PayloadTooLarge,
                E::ContentType => ErrorCode::UnsupportedMediaType,
                _ => ErrorCode::InvalidRequest,
            };
            actix_web::error::InternalError::from_response(err, error(ApiError::new(code))).into()
        })
}

pub fn run(a: ConventionalArgs) -> anyhow::Result<std::process::ExitCode> {
    let reference = Arc::new(Reference::new(
        a.fixture_seed,
        a.fixture_residents,
        a.fixture_kiosks,
    )?);
    // TCP_NODELAY, as kofu's own Redis connections: the yardstick gets the same setting.
    let info = redis::IntoConnectionInfo::into_connection_info(a.redis_url.as_str())?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    let client = redis::Client::open(info)?;
    let workers = a
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let system = actix_rt::System::new();
    system.block_on(async move {
        HttpServer::new(move || {
            let worker = web::Data::new(Worker {
                reference: reference.clone(),
                client: client.clone(),
                redis: tokio::sync::OnceCell::new(),
            });
            App::new()
                .app_data(worker)
                .app_data(json_config())
                .configure(steps::routes)
                .route("/readyz", web::get().to(HttpResponse::Ok))
                .route(
                    "/v1/issuer-key",
                    web::get().to(|w: web::Data<Worker>| async move {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(w.reference.issuer_json.clone())
                    }),
                )
                .default_service(web::to(|| async {
                    error(ApiError::new(ErrorCode::NotFound))
                }))
        })
        .workers(workers)
        .bind(&a.listen)?
        .run()
        .await
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}
