//! A misdelivering target for the replay test, without a sabotaged build of kofu: a
//! loopback HTTP proxy in front of a real node that hands each released document (body,
//! binding and signature together) to the *next* release and sends the previous one
//! instead, the cross-delivery of the systems kofu replaces. Every document stays
//! correctly signed; only its recipient is wrong.

use std::net::TcpListener;
use std::sync::Mutex;
use std::thread::JoinHandle;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use kofu_proto::api::{BINDING_HEADER, SIGNATURE_HEADER};

/// A released document as it travels: the PDF and its two headers.
#[derive(Clone)]
struct Release {
    pdf: Vec<u8>,
    binding: String,
    signature: String,
}

struct State {
    client: reqwest::Client,
    upstream: String,
    previous: Mutex<Option<Release>>,
}

/// The proxy, serving until dropped.
pub struct SwapProxy {
    /// `http://127.0.0.1:PORT`, the address to give the kiosks instead of the node's.
    pub url: String,
    system: actix_rt::System,
    thread: Option<JoinHandle<()>>,
}

impl SwapProxy {
    /// Starts a proxy forwarding every request to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> SwapProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let upstream = upstream.trim_end_matches('/').to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let state = web::Data::new(State {
                    client: reqwest::Client::new(),
                    upstream,
                    previous: Mutex::new(None),
                });
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .app_data(web::PayloadConfig::new(16 << 20))
                        .default_service(web::to(forward))
                })
                .workers(1)
                .listen(listener)
                .expect("proxy listens")
                .run();
                actix_rt::spawn(server);
            });
            tx.send(actix_rt::System::current())
                .expect("report the system");
            // Serves until `System::stop`, which also stops the server's worker.
            system.run().expect("proxy serves");
        });
        let system = rx.recv().expect("proxy started");
        SwapProxy {
            url,
            system,
            thread: Some(thread),
        }
    }
}

impl Drop for SwapProxy {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn forward(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return HttpResponse::BadGateway().body("method");
    };
    let mut out = state
        .client
        .request(method, format!("{}{path}", state.upstream))
        .body(body.to_vec());
    for (name, value) in req.headers() {
        if !hop_by_hop(name.as_str()) {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    let resp = match out.send().await {
        Ok(resp) => resp,
        Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers: Vec<(String, Vec<u8>)> = resp
        .headers()
        .iter()
        .filter(|(name, _)| !hop_by_hop(name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let Ok(bytes) = resp.bytes().await else {
        return HttpResponse::BadGateway().body("body");
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let pdf = header("content-type").is_some_and(|t| t.starts_with("application/pdf"));
    let mut answer = HttpResponse::build(status);
    let release = match (status == StatusCode::OK && pdf, header(BINDING_HEADER)) {
        (true, Some(binding)) => Some(swap(
            &state,
            Release {
                pdf: bytes.to_vec(),
                binding,
                signature: header(SIGNATURE_HEADER).unwrap_or_default(),
            },
        )),
        _ => None,
    };
    for (name, value) in &headers {
        answer.append_header((name.as_str(), value.as_slice()));
    }
    // `insert_header` replaces the node's binding and signature with the swapped ones.
    match release {
        Some(r) => answer
            .insert_header((BINDING_HEADER, r.binding))
            .insert_header((SIGNATURE_HEADER, r.signature))
            .body(r.pdf),
        None => answer.body(bytes.to_vec()),
    }
}

/// Returns the previous release (this one, for the very first) and keeps this one.
fn swap(state: &State, this: Release) -> Release {
    let mut previous = state.previous.lock().unwrap_or_else(|e| e.into_inner());
    let out = previous.take().unwrap_or_else(|| this.clone());
    *previous = Some(this);
    out
}

fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "content-length",
        "transfer-encoding",
        "host",
        "keep-alive",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}
