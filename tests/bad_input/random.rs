//! Random request generator of the bad-input test: valid skeletons with hostile parts,
//! so most requests get past routing and kiosk auth and reach the deeper parsers.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};

/// What the fuzzer may aim at.
pub struct Targets {
    pub api: String,
    /// Kiosk tokens; the first one owns `sessions`.
    pub tokens: Vec<String>,
    pub card_ids: Vec<String>,
    /// Session ids with their job ids.
    pub sessions: Vec<(String, Vec<String>)>,
}

pub struct FuzzRequest {
    pub method: Method,
    pub url: reqwest::Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Vec<u8>>,
}

fn clip(text: &str, n: usize) -> String {
    let mut out: String = text.chars().take(n).collect();
    if text.chars().count() > n {
        out.push_str(&format!("...({} chars)", text.chars().count()));
    }
    out
}

impl FuzzRequest {
    /// A short reproduction of the request for failure reports.
    pub fn describe(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", clip(&String::from_utf8_lossy(v.as_bytes()), 60)))
            .collect();
        let body = self.body.as_ref().map_or("none".to_string(), |b| {
            format!(
                "{} bytes {:?}",
                b.len(),
                clip(&String::from_utf8_lossy(b), 120)
            )
        });
        format!(
            "{} {} [{}] body {body}",
            self.method,
            clip(self.url.as_str(), 160),
            headers.join("; ")
        )
    }

    pub fn build(self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        let mut req = client.request(self.method, self.url);
        for (k, v) in self.headers {
            req = req.header(k, v);
        }
        if let Some(b) = self.body {
            req = req.body(b);
        }
        req
    }
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64ish(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(B64[rng.random_range(0..B64.len())]))
        .collect()
}

fn garbage_segment(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0 => String::new(),
        1 => "A".repeat(rng.random_range(500..4000)),
        2 => (0..rng.random_range(1..40))
            .map(|_| char::from(rng.random_range(0x21u8..0x7f)))
            .collect(),
        3 => (0..rng.random_range(1..20))
            .map(|_| format!("%{:02X}", rng.random::<u8>()))
            .collect(),
        4 => ["日本語", "🦀🦀", "é", "\u{202e}x", "ｆｕｌｌ", "\u{0}"]
            .choose(rng)
            .map_or("", |s| s)
            .to_string(),
        5 => ["..", ".", "%2e%2e", "%2F", "%00", "a%2Fb", "%"]
            .choose(rng)
            .map_or("", |s| s)
            .to_string(),
        6 => format!("{:04x}{}", rng.random_range(0..0x10000u32), b64ish(rng, 22)),
        7 => format!("j{}-{}", rng.random_range(0..200), b64ish(rng, 11)),
        8 => ["-1", "99999999999999999999", "0", "null"]
            .choose(rng)
            .map_or("", |s| s)
            .to_string(),
        _ => {
            let n = rng.random_range(1..80);
            b64ish(rng, n)
        }
    }
}

/// A real id (sometimes mangled) or garbage.
fn some_id(rng: &mut StdRng, real: Option<&String>) -> String {
    match (real, rng.random_range(0..10)) {
        (Some(id), 0..=5) => id.clone(),
        (Some(id), 6) => id.to_uppercase(),
        (Some(id), 7) => format!("{id}{}", garbage_segment(rng)),
        _ => garbage_segment(rng),
    }
}

fn random_query(rng: &mut StdRng) -> String {
    match rng.random_range(0..12) {
        0 => String::new(),
        1..=4 => format!("?wait_ms={}", rng.random_range(0..1500)),
        5 => "?wait_ms=10001".into(),
        6 => "?wait_ms=-1".into(),
        7 => "?wait_ms=abc".into(),
        8 => "?wait_ms=99999999999999999999999".into(),
        9 => "?wait_ms=0&wait_ms=5".into(),
        10 => format!("?{}={}", garbage_segment(rng), garbage_segment(rng)),
        _ => "?wait_ms=".into(),
    }
}

/// Which handler a path aims at, so bodies can be shaped for it.
#[derive(Clone, Copy)]
enum Route {
    Sessions,
    Auth,
    Jobs,
    Other,
}

/// A path, whether it names a prepared session, its route's own method and its route.
fn random_path(rng: &mut StdRng, t: &Targets) -> (String, bool, Method, Route) {
    let session = t.sessions.choose(rng);
    let sid = some_id(rng, session.map(|s| &s.0));
    let jid = some_id(rng, session.and_then(|s| s.1.first()));
    let real = session.is_some_and(|s| s.0 == sid);
    let (path, method, route) = match rng.random_range(0..12) {
        0 | 1 => ("/v1/sessions".to_string(), Method::POST, Route::Sessions),
        2 => (format!("/v1/sessions/{sid}"), Method::DELETE, Route::Other),
        3 | 4 => (
            format!("/v1/sessions/{sid}/auth"),
            Method::POST,
            Route::Auth,
        ),
        5 | 6 => (
            format!("/v1/sessions/{sid}/jobs"),
            Method::POST,
            Route::Jobs,
        ),
        7 => (
            format!(
                "/v1/sessions/{sid}/jobs/{jid}/document{}",
                random_query(rng)
            ),
            Method::GET,
            Route::Other,
        ),
        8 => (
            format!("/v1/sessions/{sid}/jobs/{jid}/printed"),
            Method::POST,
            Route::Other,
        ),
        9 => ("/v1/issuer-key".to_string(), Method::GET, Route::Other),
        10 => (
            format!("/v1/{}/{}", garbage_segment(rng), garbage_segment(rng)),
            Method::GET,
            Route::Other,
        ),
        _ => (
            format!("/{}/{}", garbage_segment(rng), garbage_segment(rng)),
            Method::POST,
            Route::Other,
        ),
    };
    (path, real, method, route)
}

fn auth_header(rng: &mut StdRng, t: &Targets) -> Option<HeaderValue> {
    let token = t.tokens.choose(rng).cloned().unwrap_or_default();
    let text = match rng.random_range(0..20) {
        0..=10 => format!("Bearer {}", t.tokens[0]),
        11 | 12 => format!("Bearer {token}"),
        13 => return None,
        14 => {
            let mut raw = b"Bearer ".to_vec();
            raw.extend((0..rng.random_range(1..60)).map(|_| rng.random_range(0x80u8..=0xff)));
            return HeaderValue::from_bytes(&raw).ok();
        }
        15 => format!("Bearer {}", "x".repeat(rng.random_range(100..3000))),
        16 => format!("bearer {token}"),
        17 => format!("Bearer {}", token.replacen('.', "..", 1)),
        18 => format!("Bearer {}", garbage_segment(rng)),
        _ => garbage_segment(rng),
    };
    HeaderValue::from_str(&text).ok()
}

fn content_type(rng: &mut StdRng) -> Option<&'static str> {
    match rng.random_range(0..10) {
        0..=4 => Some("application/json"),
        5 => None,
        6 => Some("text/plain"),
        7 => Some("application/json; charset=latin1"),
        8 => Some("application/x-www-form-urlencoded"),
        _ => Some("garbage/;;;"),
    }
}

fn nested(rng: &mut StdRng) -> Vec<u8> {
    let depth = rng.random_range(50..6000);
    let (open, close) = if rng.random_bool(0.5) {
        ("[", "]")
    } else {
        ("{\"a\":", "}")
    };
    let mut s = open.repeat(depth);
    s.push('1');
    if rng.random_bool(0.7) {
        s.push_str(&close.repeat(depth));
    }
    s.into_bytes()
}

fn random_body(rng: &mut StdRng, t: &Targets, route: Route) -> Option<Vec<u8>> {
    let card = t.card_ids.choose(rng).cloned().unwrap_or_default();
    let kind = [
        "residence",
        "seal",
        "tax",
        "family_register",
        "RESIDENCE",
        "",
    ]
    .choose(rng)
    .map_or("", |s| s);
    // Half the bodies are shaped for the route so they reach its field validation.
    let shaped: &[u32] = match route {
        Route::Sessions => &[4, 12, 13, 16, 19, 20, 23],
        Route::Auth => &[5, 5, 21, 15],
        Route::Jobs => &[6, 7, 10, 11, 22],
        Route::Other => &[],
    };
    let case = match shaped.choose(rng) {
        Some(c) if rng.random_bool(0.5) => *c,
        _ => rng.random_range(0..24),
    };
    let text = match case {
        0..=3 => return None,
        4 => format!("{{\"card_id\":\"{card}\"}}"),
        5 => format!("{{\"signature\":\"{}\"}}", b64ish(rng, 86)),
        6 | 7 => format!(
            "{{\"kind\":\"{kind}\",\"copies\":{}}}",
            rng.random_range(-2..8)
        ),
        8 => [
            "{",
            "{\"card_id\":}",
            "[",
            "nul",
            "{'a':1}",
            "{\"kind\":\"tax\",}",
            "}",
        ]
        .choose(rng)
        .map_or("", |s| s)
        .to_string(),
        9 => return Some(nested(rng)),
        10 => "{\"kind\":\"residence\",\"copies\":1e400}".into(),
        11 => "{\"kind\":\"residence\",\"copies\":18446744073709551616}".into(),
        12 => format!(
            "{{\"card_id\":{}}}",
            ["[]", "null", "1", "{}", "true"]
                .choose(rng)
                .map_or("", |s| s)
        ),
        13 => format!("{{\"card_id\":\"{card}\",\"{}\":1}}", b64ish(rng, 5)),
        14 => ["null", "true", "123", "\"str\"", "[]", "{}"]
            .choose(rng)
            .map_or("", |s| s)
            .to_string(),
        15 => return Some(vec![b'a'; rng.random_range(16 * 1024 + 1..40_000)]),
        16 => {
            let mut b = format!("{{\"card_id\":\"{card}\"}}").into_bytes();
            b.resize(rng.random_range(16 * 1024 + 1..20_000), b' ');
            return Some(b);
        }
        17 => {
            return Some(
                (0..rng.random_range(1..300))
                    .map(|_| rng.random())
                    .collect(),
            );
        }
        18 => String::new(),
        19 => format!("{{\"card_id\":\"{card}\",\"card_id\":\"{card}\"}}"),
        20 => format!("\u{feff}{{\"card_id\":\"{card}\"}}"),
        21 => format!("{{\"signature\":\"{}\"}}", garbage_segment(rng)),
        22 => format!(
            "{{\"kind\":\"{kind}\",\"copies\":\"{}\"}}",
            garbage_segment(rng)
        ),
        _ => format!("{{\"card_id\":\"{}\"}}", garbage_segment(rng)),
    };
    Some(text.into_bytes())
}

pub fn random_request(rng: &mut StdRng, t: &Targets) -> FuzzRequest {
    let methods = [
        Method::GET,
        Method::GET,
        Method::POST,
        Method::POST,
        Method::POST,
        Method::DELETE,
        Method::PUT,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ];
    let (path, real, natural, route) = random_path(rng, t);
    let mut method = if rng.random_bool(0.7) {
        natural
    } else {
        methods.choose(rng).cloned().unwrap_or(Method::GET)
    };
    // Closing the prepared sessions early would leave little to fuzz on.
    if real && method == Method::DELETE && rng.random_bool(0.9) {
        method = Method::GET;
    }
    let url = reqwest::Url::parse(&format!("{}{path}", t.api))
        .or_else(|_| reqwest::Url::parse(&format!("{}/v1/sessions", t.api)))
        .unwrap_or_else(|e| panic!("base url: {e}"));
    let mut headers = Vec::new();
    if let Some(v) = auth_header(rng, t) {
        headers.push((reqwest::header::AUTHORIZATION, v));
    }
    let body = random_body(rng, t, route);
    let ctype = content_type(rng);
    if let (Some(_), Some(ct)) = (&body, ctype) {
        headers.push((reqwest::header::CONTENT_TYPE, HeaderValue::from_static(ct)));
    }
    if rng.random_bool(0.1) {
        let junk = HeaderValue::from_str(&b64ish(rng, 40)).unwrap_or(HeaderValue::from_static("x"));
        headers.push((HeaderName::from_static("x-junk"), junk));
    }
    FuzzRequest {
        method,
        url,
        headers,
        body,
    }
}
