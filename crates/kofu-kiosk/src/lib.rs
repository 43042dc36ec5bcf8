//! The kiosk's side of kofu's protocol (API.md), in one place for every program that
//! plays kiosk: `kofu demo`, the load generator and the tests. It holds the fixture
//! population (cards that sign, kiosk credentials), the session steps over HTTP with
//! typed outcomes (success, API error, or no answer), whole sessions, and the check a
//! kiosk makes before printing a document.
//!
//! It depends on `kofu-proto` alone among kofu's crates and on no actor or server
//! framework.

mod client;
mod fixtures;
mod kiosk;
mod names;
mod outcome;
mod pdftotext;
mod raw;
mod session;
mod verify;

pub use client::{BuildError, Client, ClientBuilder, Route};
pub use fixtures::{Card, FixtureError, Fixtures, KioskCred};
pub use kiosk::{Fetched, Kiosk, LongPoll, MAX_WAIT_MS, Raw, Released};
pub use names::{contains_name, names_in, normalize_spaces};
pub use outcome::{CallError, ErrorAnswer, NoAnswer, Observer, Record, Step};
pub use pdftotext::pdf_text;
pub use raw::Resp;
pub use session::{Completed, Fault, KindChoice, Plan, Retry, SessionFailure};
pub use verify::{Expected, NameFault, Refusal, TextCheck, Verified, Verifier, check_names};

/// Re-exported so that users name HTTP methods without depending on reqwest.
pub use reqwest::Method;
