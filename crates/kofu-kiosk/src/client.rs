//! The HTTP side of a kiosk fleet: one keep-alive pool, the nodes to send to (a random one
//! per request, as a load balancer would, or a pinned one), timeouts, and the one place a
//! request is sent and its answer read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kofu_proto::verify::IssuerKeys;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::fixtures::KioskCred;
use crate::kiosk::Kiosk;
use crate::outcome::{CallError, ErrorAnswer, NoAnswer, Observer, Record, Step};
use crate::raw::Resp;

/// Long enough for a 10 s long poll plus slack; short enough that a hang is noticed.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Below the node's keep-alive (75 s), so the pool never reuses a connection the node is
/// closing (that race loses the request).
const DEFAULT_POOL_IDLE: Duration = Duration::from_secs(30);

/// Why a client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot build the http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot read {0}")]
    Read(std::path::PathBuf),
}

/// PEM text that may hold a private key: never printed.
#[derive(Clone)]
struct Pem(Vec<u8>);

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pem(..)")
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|_| BuildError::Read(path.to_owned()))
}

/// Which target a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A random target per request, as a load balancer in front of a cluster would.
    Spread,
    /// Always target `i mod n`.
    Pinned(usize),
}

/// How to build a [`Client`], HTTPS options included (the CA to trust, a client
/// certificate); the client speaks rustls.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    targets: Vec<String>,
    route: Route,
    timeout: Duration,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: Option<usize>,
    /// The only CA trusted for `https://` targets (else the built-in roots).
    ca: Option<Pem>,
    /// Client certificate chain and key, concatenated.
    identity: Option<Pem>,
}

impl Default for ClientBuilder {
    fn default() -> ClientBuilder {
        ClientBuilder {
            targets: Vec::new(),
            route: Route::Spread,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE,
            pool_max_idle_per_host: None,
            ca: None,
            identity: None,
        }
    }
}

impl ClientBuilder {
    /// One more node, by its kiosk API base URL (`http://127.0.0.1:8080`).
    pub fn target(mut self, base: &str) -> ClientBuilder {
        self.targets.push(base.trim_end_matches('/').to_owned());
        self
    }

    /// Several nodes at once.
    pub fn targets<S: AsRef<str>>(self, bases: impl IntoIterator<Item = S>) -> ClientBuilder {
        bases.into_iter().fold(self, |b, t| b.target(t.as_ref()))
    }

    pub fn route(mut self, route: Route) -> ClientBuilder {
        self.route = route;
        self
    }

    /// Per request, from sending until the whole body was read.
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// Idle pooled connections are retired after this; keep it below the node's 75 s.
    pub fn pool_idle_timeout(mut self, idle: Duration) -> ClientBuilder {
        self.pool_idle_timeout = idle;
        self
    }

    /// Idle connections kept per node (HTTP/1.1 needs one per request in flight).
    pub fn pool_max_idle_per_host(mut self, n: usize) -> ClientBuilder {
        self.pool_max_idle_per_host = Some(n);
        self
    }

    /// Trust only this CA (PEM) for `https://` targets, as a kiosk trusts the one CA of
    /// its operator rather than the whole web's.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> ClientBuilder {
        self.ca = Some(Pem(pem.into()));
        self
    }

    /// [`ClientBuilder::ca_pem`] from a file.
    pub fn ca_file(self, path: &std::path::Path) -> Result<ClientBuilder, BuildError> {
        Ok(self.ca_pem(read_file(path)?))
    }

    /// Present this client certificate (chain, PEM) and key (PEM) to HTTPS targets.
    pub fn client_cert_pem(mut self, cert: &[u8], key: &[u8]) -> ClientBuilder {
        let mut both = cert.to_vec();
        both.push(b'\n');
        both.extend_from_slice(key);
        self.identity = Some(Pem(both));
        self
    }

    /// [`ClientBuilder::client_cert_pem`] from two files.
    pub fn client_cert_files(
        self,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<ClientBuilder, BuildError> {
        let (cert, key) = (read_file(cert)?, read_file(key)?);
        Ok(self.client_cert_pem(&cert, &key))
    }

    /// A client without targets sends only [`Client::request`]s; its steps get no answer.
    pub fn build(self) -> Result<Client, BuildError> {
        let mut http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(self.pool_idle_timeout)
            .tcp_nodelay(true);
        if let Some(n) = self.pool_max_idle_per_host {
            http = http.pool_max_idle_per_host(n);
        }
        if let Some(Pem(ca)) = &self.ca {
            http = http.tls_built_in_root_certs(false);
            for cert in reqwest::Certificate::from_pem_bundle(ca)? {
                http = http.add_root_certificate(cert);
            }
        }
        if let Some(Pem(identity)) = &self.identity {
            http = http.identity(reqwest::Identity::from_pem(identity)?);
        }
        Ok(Client {
            http: http.build()?,
            targets: self.targets.into(),
            route: self.route,
            observer: None,
        })
    }
}

/// A pool of connections to one or more nodes. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    targets: Arc<[String]>,
    route: Route,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("targets", &self.targets)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The kiosk with this credential, on this client's pool and route.
    pub fn kiosk(&self, cred: &KioskCred) -> Kiosk {
        Kiosk::new(self.clone(), cred)
    }

    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    pub fn route(&self) -> Route {
        self.route
    }

    /// The base URL every request goes to, when that is one (pinned, or one target).
    pub fn fixed_target(&self) -> Option<&str> {
        match self.route {
            Route::Spread if self.targets.len() > 1 => None,
            _ => self.pick().map(|(_, base)| base),
        }
    }

    /// The same pool, every request to target `i mod n`.
    pub fn pinned(&self, i: usize) -> Client {
        self.with_route(Route::Pinned(i))
    }

    pub fn with_route(&self, route: Route) -> Client {
        Client {
            route,
            ..self.clone()
        }
    }

    /// The same pool and route over other nodes (a cluster whose members changed). An
    /// empty list keeps the current targets.
    pub fn with_targets<S: AsRef<str>>(&self, bases: impl IntoIterator<Item = S>) -> Client {
        let targets: Vec<String> = bases
            .into_iter()
            .map(|b| b.as_ref().trim_end_matches('/').to_owned())
            .collect();
        if targets.is_empty() {
            return self.clone();
        }
        Client {
            targets: targets.into(),
            ..self.clone()
        }
    }

    /// The same client, telling `observer` about every request it sends.
    pub fn with_observer(&self, observer: Observer) -> Client {
        Client {
            observer: Some(observer),
            ..self.clone()
        }
    }

    /// `GET /v1/issuer-key` (no credential), parsed: every key the node says to trust
    /// (current, next and retired), each under its id. Refused whole when a key is
    /// malformed or listed under another key's id.
    pub async fn issuer_keys(&self) -> Result<IssuerKeys, CallError> {
        let x = self
            .exchange(Step::IssuerKey, Method::GET, "/v1/issuer-key", None, None)
            .await
            .map_err(CallError::NoAnswer)?;
        let key: kofu_proto::api::IssuerKeyResponse = x.success(StatusCode::OK)?.json()?;
        IssuerKeys::from_response(&key).map_err(|_| CallError::Malformed {
            status: 200,
            what: "the issuer keys are not ed25519 public keys under their ids",
        })
    }

    /// Any request to an absolute URL (an admin listener, a route that does not exist),
    /// with `authorization` as the whole header value when given.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        authorization: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut req = self.http.request(method, url);
        if let Some(auth) = authorization {
            req = req.header(AUTHORIZATION, auth);
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let started = Instant::now();
        let answer = read(req.send().await).await;
        self.observe(Step::Other, None, started, &answer);
        match answer {
            Ok(x) => x.into_resp(),
            Err(e) => Resp::no_answer(&e),
        }
    }

    /// Where the next request goes: index and base URL.
    fn pick(&self) -> Option<(usize, &str)> {
        let n = self.targets.len();
        let i = match self.route {
            _ if n == 0 => return None,
            Route::Pinned(i) => i % n,
            Route::Spread if n > 1 => rand::random_range(0..n),
            Route::Spread => 0,
        };
        Some((i, &self.targets[i]))
    }

    /// Sends one request to the route's target and reads the whole answer.
    pub(crate) async fn exchange(
        &self,
        step: Step,
        method: Method,
        path: &str,
        auth: Option<&HeaderValue>,
        json: Option<Vec<u8>>,
    ) -> Result<Exchange, NoAnswer> {
        let (target, base) = self.pick().ok_or_else(|| NoAnswer {
            timeout: false,
            detail: "no target to send to".to_owned(),
        })?;
        let mut req = self.http.request(method, format!("{base}{path}"));
        if let Some(auth) = auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = json {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let started = Instant::now();
        let answer = read(req.send().await).await;
        self.observe(step, Some(target), started, &answer);
        answer
    }

    fn observe(
        &self,
        step: Step,
        target: Option<usize>,
        started: Instant,
        answer: &Result<Exchange, NoAnswer>,
    ) {
        let Some(observer) = &self.observer else {
            return;
        };
        let (status, code, timeout) = match answer {
            Ok(x) if x.status.is_success() => (Some(x.status.as_u16()), None, false),
            Ok(x) => (Some(x.status.as_u16()), x.api_error().code(), false),
            Err(e) => (None, None, e.timeout),
        };
        observer(&Record {
            step,
            target,
            started,
            elapsed: started.elapsed(),
            status,
            code,
            timeout,
        });
    }
}

/// Reads a whole answer; a failure mid-body counts as no answer.
pub(crate) async fn read(sent: reqwest::Result<reqwest::Response>) -> Result<Exchange, NoAnswer> {
    let mut resp = sent.map_err(|e| NoAnswer::from_reqwest(&e))?;
    let status = resp.status();
    // Moved out, not copied: the body is decoded by then.
    let headers = std::mem::take(resp.headers_mut());
    let body = resp.bytes().await.map_err(|e| NoAnswer::from_reqwest(&e))?;
    Ok(Exchange {
        status,
        headers,
        body,
    })
}

/// One complete answer.
pub(crate) struct Exchange {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Exchange {
    pub(crate) fn into_resp(self) -> Resp {
        Resp {
            status: self.status.as_u16(),
            headers: self.headers,
            body: self.body,
        }
    }

    pub(crate) fn api_error(&self) -> ErrorAnswer {
        let retry_after = self
            .headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok());
        ErrorAnswer::parse(self.status.as_u16(), retry_after, &self.body)
    }

    /// `Ok` for the status `want`, else [`Exchange::unexpected`].
    pub(crate) fn success(self, want: StatusCode) -> Result<Exchange, CallError> {
        if self.status == want {
            Ok(self)
        } else {
            Err(self.unexpected())
        }
    }

    /// An answer other than the step's: an API error for an error status, malformed
    /// for any other.
    pub(crate) fn unexpected(&self) -> CallError {
        if self.status.is_client_error() || self.status.is_server_error() {
            CallError::Api(self.api_error())
        } else {
            CallError::Malformed {
                status: self.status.as_u16(),
                what: "unexpected status",
            }
        }
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, CallError> {
        serde_json::from_slice(&self.body).map_err(|_| CallError::Malformed {
            status: self.status.as_u16(),
            what: "the body is not the expected json",
        })
    }
}
