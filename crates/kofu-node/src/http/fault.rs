//! Test-only sabotage, compiled only with the `fault-swap-documents` feature: each
//! released document (body, binding and signature together) is handed to the *next*
//! release, and the previous one goes out instead, the cross-delivery of the systems
//! kofu replaces. It exists so a test can show that `kofu-load` catches a node that does
//! this; no normal build contains it.

use std::sync::Mutex;

use kofu_proto::Document;

static PREVIOUS: Mutex<Option<Document>> = Mutex::new(None);

/// Returns the previous release (or this one, for the very first) and keeps this one.
pub fn swap(doc: Document) -> Document {
    let mut previous = PREVIOUS.lock().unwrap_or_else(|e| e.into_inner());
    let out = previous.take().unwrap_or_else(|| doc.clone());
    *previous = Some(doc);
    out
}
