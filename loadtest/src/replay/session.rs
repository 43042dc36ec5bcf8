//! One kiosk session of a replay: its steps at their intended times, each answer checked
//! against what that step must get, every document checked like a kiosk before printing.

use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::Signer as _;
use kofu_proto::CertKind;
use kofu_proto::api::{CreateSessionResponse, JobResponse};
use kofu_proto::verify::{Expected, verify_release};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::Shared;
use kofu_proto::trace::{Action, SessionTrace};

struct Answer {
    status: StatusCode,
    code: String,
    binding: Option<String>,
    signature: Option<String>,
    body: Bytes,
}

/// What one session knows between steps.
struct State<'a> {
    shared: &'a Shared,
    base: &'a str,
    kiosk: usize,
    card: usize,
    session_id: Option<String>,
    challenge: Vec<u8>,
    job: Option<(String, CertKind, u8)>,
    last: Option<Action>,
    failed: bool,
}

pub(crate) async fn run(shared: &Shared, index: usize, s: &SessionTrace) {
    let targets = &shared.config.targets;
    let mut st = State {
        shared,
        base: targets[index % targets.len()].trim_end_matches('/'),
        kiosk: s.kiosk as usize,
        card: s.card as usize,
        session_id: None,
        challenge: Vec::new(),
        job: None,
        last: None,
        failed: false,
    };
    for step in &s.steps {
        let intended = shared.at(s.start_us + step.at_us);
        tokio::time::sleep_until(intended).await;
        let action = match step.action {
            Action::Retry => match st.last {
                Some(a) => a,
                None => continue,
            },
            a => a,
        };
        if matches!(action, Action::Abandon) {
            return;
        }
        let name = step.action.step_name();
        let error = st.step(action).await.err();
        let now = Instant::now();
        let failed = error.is_some();
        shared.with(|c| {
            c.request(
                name,
                now.saturating_duration_since(intended),
                now.saturating_duration_since(shared.origin),
                error,
            )
        });
        if failed {
            // A session that went wrong stops, as a kiosk would show an error screen.
            st.failed = true;
            return;
        }
        st.last = Some(action);
    }
    if !st.failed {
        let at = Instant::now().saturating_duration_since(shared.origin);
        shared.with(|c| c.completed(at));
    }
}

impl State<'_> {
    async fn send(&self, method: Method, path: &str, kiosk: usize, body: Option<Value>) -> Answer {
        let fx = &self.shared.fx;
        let mut req = self
            .shared
            .client
            .request(method, format!("{}{path}", self.base))
            .header("authorization", &fx.kiosks[kiosk].auth);
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let header = |n: &str| {
                    resp.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let (binding, signature) = (header("kofu-binding"), header("kofu-signature"));
                let body = resp.bytes().await.unwrap_or_default();
                let code = if status.is_success() {
                    String::new()
                } else {
                    serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| "no_error_body".to_owned())
                };
                Answer {
                    status,
                    code,
                    binding,
                    signature,
                    body,
                }
            }
            Err(e) => Answer {
                status: StatusCode::from_u16(599).unwrap_or(StatusCode::BAD_GATEWAY),
                code: if e.is_timeout() {
                    "timeout"
                } else {
                    "transport"
                }
                .to_owned(),
                binding: None,
                signature: None,
                body: Bytes::new(),
            },
        }
    }

    /// The card id, which only card insertions send.
    fn card_id(&self) -> &str {
        self.shared.fx.cards[self.card].card.expose()
    }

    fn sid(&self) -> Result<&str, String> {
        self.session_id
            .as_deref()
            .ok_or_else(|| "no session".to_owned())
    }

    /// Performs `action`; `Err` names the unexpected outcome (`step status code`).
    async fn step(&mut self, action: Action) -> Result<(), String> {
        let name = action.step_name();
        let expect = |a: &Answer, want: u16| {
            if a.status.as_u16() == want {
                Ok(())
            } else {
                Err(format!("{name} {} {}", a.status.as_u16(), a.code))
            }
        };
        match action {
            Action::Create => {
                let a = self
                    .send(
                        Method::POST,
                        "/v1/sessions",
                        self.kiosk,
                        Some(json!({ "card_id": self.card_id() })),
                    )
                    .await;
                expect(&a, 201)?;
                let created: CreateSessionResponse =
                    serde_json::from_slice(&a.body).map_err(|_| format!("{name} bad body"))?;
                self.challenge = kofu_proto::b64url_decode(&created.challenge).unwrap_or_default();
                self.session_id = Some(created.session_id);
                Ok(())
            }
            Action::Auth { valid } => {
                let sid = self.sid()?.to_owned();
                let fx = &self.shared.fx;
                let msg = kofu_proto::auth_message(
                    &sid,
                    &fx.kiosks[self.kiosk].kiosk_id,
                    &self.challenge,
                );
                let mut sig = fx.cards[self.card].key.sign(&msg).to_bytes();
                if !valid {
                    sig[0] ^= 0xff;
                }
                let body = json!({ "signature": kofu_proto::b64url(&sig) });
                let a = self
                    .send(
                        Method::POST,
                        &format!("/v1/sessions/{sid}/auth"),
                        self.kiosk,
                        Some(body),
                    )
                    .await;
                expect(&a, if valid { 200 } else { 401 })
            }
            Action::Job { kind, copies } => {
                let sid = self.sid()?.to_owned();
                let body = json!({ "kind": kind, "copies": copies });
                let a = self
                    .send(
                        Method::POST,
                        &format!("/v1/sessions/{sid}/jobs"),
                        self.kiosk,
                        Some(body),
                    )
                    .await;
                expect(&a, 202)?;
                let job: JobResponse =
                    serde_json::from_slice(&a.body).map_err(|_| format!("{name} bad body"))?;
                self.job = Some((job.job_id, kind, copies));
                Ok(())
            }
            Action::Fetch { wait_ms } => self.fetch(wait_ms).await,
            Action::Printed => {
                let sid = self.sid()?.to_owned();
                let (job, _, _) = self
                    .job
                    .clone()
                    .ok_or_else(|| format!("{name} without a job"))?;
                let a = self
                    .send(
                        Method::POST,
                        &format!("/v1/sessions/{sid}/jobs/{job}/printed"),
                        self.kiosk,
                        None,
                    )
                    .await;
                expect(&a, 200)
            }
            Action::Close => {
                let sid = self.sid()?.to_owned();
                let a = self
                    .send(
                        Method::DELETE,
                        &format!("/v1/sessions/{sid}"),
                        self.kiosk,
                        None,
                    )
                    .await;
                expect(&a, 204)
            }
            Action::DuplicateCard { kiosk } => {
                let a = self
                    .send(
                        Method::POST,
                        "/v1/sessions",
                        kiosk as usize,
                        Some(json!({ "card_id": self.card_id() })),
                    )
                    .await;
                expect(&a, 409)
            }
            Action::Abandon | Action::Retry => Ok(()),
        }
    }

    /// Polls until the document is released, then checks it like a kiosk: issuer
    /// signature, `doc_sha256`, binding (session, kiosk, card, kind, copies), the
    /// holder's name in the PDF and no resident's name from outside the household.
    async fn fetch(&mut self, wait_ms: u32) -> Result<(), String> {
        let sid = self.sid()?.to_owned();
        let (job, kind, copies) = self
            .job
            .clone()
            .ok_or_else(|| "fetch without a job".to_owned())?;
        let path = format!(
            "/v1/sessions/{sid}/jobs/{job}/document?wait_ms={}",
            wait_ms.min(10_000)
        );
        let until = Instant::now() + self.shared.config.fetch_budget;
        let a = loop {
            let a = self.send(Method::GET, &path, self.kiosk, None).await;
            if a.status != StatusCode::ACCEPTED || Instant::now() >= until {
                break a;
            }
            if wait_ms == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        if a.status != StatusCode::OK {
            return Err(format!("fetch {} {}", a.status.as_u16(), a.code));
        }
        let fx = &self.shared.fx;
        let card = &fx.cards[self.card];
        let expected = Expected {
            session_id: &sid,
            kiosk_id: &fx.kiosks[self.kiosk].kiosk_id,
            card: &card.card,
            kind,
            copies,
        };
        let checked = verify_release(
            &self.shared.issuer,
            &a.body,
            a.binding.as_deref().unwrap_or_default(),
            a.signature.as_deref().unwrap_or_default(),
            &expected,
        )
        .map_err(|e| e.to_string())
        .and_then(|_| {
            if !contains(&a.body, &kofu_proto::doctext::name_pattern(&card.full_name)) {
                Err("the holder's name is not in the document".to_owned())
            } else if fx.foreign_name_in(&a.body, card.household) {
                Err("the document names a resident of another household".to_owned())
            } else {
                Ok(())
            }
        });
        match checked {
            Ok(()) => {
                self.shared.with(|c| c.counts.documents_verified += 1);
                Ok(())
            }
            Err(why) => {
                // The why names no personal data: binding field names and fixed texts.
                self.shared
                    .with(|c| c.misdelivery(format!("session {sid}: {why}")));
                Err("fetch misdelivery".to_owned())
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
