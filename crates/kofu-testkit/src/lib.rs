//! Test harness for black-box tests: spawns real `kofu` processes, knows their fixture
//! population and drives them as kiosks do, so every test checks the product over HTTP.

mod bin;
mod client;
mod fixtures;
mod node;
mod pdf;
mod verify;

pub use bin::{free_port, kofu_bin};
pub use client::{Kiosk, Resp, admin_post, get, new_client};
pub use fixtures::{Card, Fixtures, KioskCred};
pub use node::{KofuNode, NodeOptions};
pub use pdf::{contains_name, pdf_text};
pub use verify::{SessionReport, verify_document};
