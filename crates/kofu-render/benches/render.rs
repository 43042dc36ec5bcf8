//! Measures the render + sign budget (≤ 100 µs p50 for a residence certificate, issue 12)
//! per kind, for a Japanese household, plus the PDF alone and the release self-check that follows every render.

// The certificate tests' household (names in kanji with readings, one outside basic
// JIS), so that what is measured is what is tested.
#[path = "../tests/common/mod.rs"]
mod common;

use common::{expected, issuer, takahashi};
use criterion::{Criterion, criterion_group, criterion_main};
use kofu_core::records::ResidentRecord;
use kofu_proto::CertKind;
use kofu_render::{RenderRequest, render, render_pdf, self_check};
use std::hint::black_box;

/// One copy: the common order.
fn request(record: &ResidentRecord, kind: CertKind) -> RenderRequest<'_> {
    RenderRequest {
        copies: 1,
        ..common::request(record, kind)
    }
}

fn benches(c: &mut Criterion) {
    let issuer = issuer();
    let rec = takahashi();
    let mut group = c.benchmark_group("render_sign");
    for kind in CertKind::ALL {
        let req = request(&rec, kind);
        group.bench_function(kind.as_str(), |b| {
            b.iter(|| render(black_box(&issuer), black_box(&req)))
        });
    }
    group.finish();

    let req = request(&rec, CertKind::Residence);
    c.bench_function("pdf_only/residence", |b| {
        b.iter(|| render_pdf(black_box(&req)))
    });

    let doc = render(&issuer, &req);
    let public = issuer.keys();
    let expected = expected(&doc, &rec.card_id);
    let binding = doc.binding.to_bytes();
    c.bench_function("sign_only/residence_binding", |b| {
        b.iter(|| issuer.sign(black_box(&binding)))
    });
    c.bench_function("self_check/residence", |b| {
        b.iter(|| self_check(black_box(&public), black_box(&doc), black_box(&expected)))
    });
}

criterion_group!(render_benches, benches);
criterion_main!(render_benches);
