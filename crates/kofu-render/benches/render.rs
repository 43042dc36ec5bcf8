//! Measures the render + sign budget of DESIGN.md (≤ 50 µs for a one-page certificate)
//! per kind, plus the PDF alone and the release self-check that follows every render.

use criterion::{Criterion, criterion_group, criterion_main};
use kofu_core::records::{Date, Member, Municipality, Relation, ResidentRecord, Seal, TaxRecord};
use kofu_proto::verify::Expected;
use kofu_proto::{CardId, CertKind};
use kofu_render::{Issuer, RenderRequest, render, render_pdf, self_check};
use std::hint::black_box;

fn date(year: u16, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

fn record() -> ResidentRecord {
    let household = [
        ("Hiroshi Tanaka", Relation::Head, date(1978, 4, 2)),
        ("Yuki Tanaka", Relation::Spouse, date(1981, 9, 17)),
        ("Sora Tanaka", Relation::Child, date(2010, 1, 30)),
        ("Mei Tanaka", Relation::Child, date(2014, 6, 8)),
    ]
    .into_iter()
    .map(|(name, relation, birth_date)| Member {
        full_name: name.to_owned(),
        birth_date,
        relation,
    })
    .collect();
    ResidentRecord {
        card_id: CardId::parse("0123456789ABCDEF").expect("valid card id"),
        version: 7,
        full_name: "Yuki Tanaka".to_owned(),
        birth_date: date(1981, 9, 17),
        relation: Relation::Spouse,
        address: "3-14-1 Nishi-Shinjuku, Shinjuku-ku, Tokyo 160-0023".to_owned(),
        municipality: Municipality {
            code: "131041".to_owned(),
            name: "Shinjuku City, Tokyo".to_owned(),
        },
        household_id: "H-000123".to_owned(),
        household,
        seal: Seal::Registered {
            number: "SEAL-131041-000123".to_owned(),
            registered_on: date(2015, 3, 1),
        },
        tax: Some(TaxRecord {
            fiscal_year: 2025,
            income_yen: 5_230_000,
            municipal_tax_yen: 214_300,
            prefectural_tax_yen: 142_900,
        }),
        restricted: false,
        card_revoked: false,
        card_public_key: [9; 32],
    }
}

fn request(record: &ResidentRecord, kind: CertKind) -> RenderRequest<'_> {
    RenderRequest {
        record,
        kind,
        copies: 1,
        serial: "131041-20261121-000042",
        issued_at: "2026-11-21T09:00:00Z",
        session_id: "s0123-AbCdEfGhIjKlMnOpQrStUvWxYz012345",
        kiosk_id: "SEJ-13104-0042-01",
    }
}

fn benches(c: &mut Criterion) {
    let issuer = Issuer::from_seed([42; 32]);
    let rec = record();
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
    let public = issuer.verifying_key();
    let expected = Expected {
        session_id: req.session_id,
        kiosk_id: req.kiosk_id,
        card: &rec.card_id,
        kind: req.kind,
        copies: req.copies,
    };
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
