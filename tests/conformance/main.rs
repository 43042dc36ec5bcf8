//! API.md conformance over real HTTP: every endpoint and every listed status code,
//! each test against its own freshly spawned `kofu serve`.

mod admin;
mod auth;
mod documents;
mod jobs;
mod process;
mod sessions;
mod transport;
