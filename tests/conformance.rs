//! API.md conformance over real HTTP: every endpoint and every listed status code,
//! each test against its own freshly spawned `kofu serve`.

#[path = "common.rs"]
mod common;

#[path = "conformance/admin.rs"]
mod admin;
#[path = "conformance/auth.rs"]
mod auth;
#[path = "conformance/documents.rs"]
mod documents;
#[path = "conformance/jobs.rs"]
mod jobs;
#[path = "conformance/process.rs"]
mod process;
#[path = "conformance/sessions.rs"]
mod sessions;
#[path = "conformance/transport.rs"]
mod transport;
