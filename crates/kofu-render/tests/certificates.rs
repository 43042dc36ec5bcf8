//! Checks the rendered certificates the way a kiosk and a reader would: text extracted by
//! poppler's `pdftotext`, the signed binding verified with the protocol's own verifier.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use kofu_core::records::{Date, Member, Municipality, Relation, ResidentRecord, Seal, TaxRecord};
use kofu_proto::verify::{Expected, VerifyError, verify_release};
use kofu_proto::{Binding, CardId, CertKind};
use kofu_render::{Issuer, RenderRequest, Rendered, render, render_pdf, self_check};
use sha2::{Digest, Sha256};

const SERIAL: &str = "131041-20261121-000042";
const ISSUED_AT: &str = "2026-11-21T09:00:00Z";
const SESSION: &str = "s0123-AbCdEfGhIjKlMnOpQrStUvWxYz012345";
const KIOSK: &str = "SEJ-13104-0042-01";
/// Lives in another household; must never appear on the Tanakas' documents.
const STRANGER: &str = "Kenji Watanabe";

fn date(year: u16, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

fn member(name: &str, relation: Relation, birth_date: Date) -> Member {
    Member {
        full_name: name.to_owned(),
        birth_date,
        relation,
    }
}

fn tanaka() -> ResidentRecord {
    ResidentRecord {
        card_id: CardId::parse("0123456789ABCDEF").expect("valid card id"),
        version: 7,
        full_name: "Yuki Tanaka".to_owned(),
        birth_date: date(1981, 9, 17),
        relation: Relation::Spouse,
        address: "3-14-1 Nishi-Shinjuku (Bldg A), Shinjuku-ku, Tokyo 160-0023".to_owned(),
        municipality: Municipality {
            code: "131041".to_owned(),
            name: "Shinjuku City, Tokyo".to_owned(),
        },
        household_id: "H-000123".to_owned(),
        household: vec![
            member("Hiroshi Tanaka", Relation::Head, date(1978, 4, 2)),
            member("Yuki Tanaka", Relation::Spouse, date(1981, 9, 17)),
            member("Sora Tanaka", Relation::Child, date(2010, 1, 30)),
            member("Mei Tanaka", Relation::Child, date(2014, 6, 8)),
        ],
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

fn watanabe() -> ResidentRecord {
    ResidentRecord {
        card_id: CardId::parse("00000000000000AA").expect("valid card id"),
        version: 3,
        full_name: STRANGER.to_owned(),
        birth_date: date(1990, 12, 1),
        relation: Relation::Head,
        address: "1-1 Kita-ku, Osaka".to_owned(),
        municipality: Municipality {
            code: "271276".to_owned(),
            name: "Kita Ward, Osaka".to_owned(),
        },
        household_id: "H-000999".to_owned(),
        household: vec![member(STRANGER, Relation::Head, date(1990, 12, 1))],
        seal: Seal::NotRegistered,
        tax: None,
        restricted: false,
        card_revoked: false,
        card_public_key: [5; 32],
    }
}

fn request(record: &ResidentRecord, kind: CertKind) -> RenderRequest<'_> {
    RenderRequest {
        record,
        kind,
        copies: 2,
        serial: SERIAL,
        issued_at: ISSUED_AT,
        session_id: SESSION,
        kiosk_id: KIOSK,
    }
}

fn issuer() -> Issuer {
    Issuer::from_seed([42; 32])
}

fn expected<'a>(doc: &'a Rendered, card: &'a CardId) -> Expected<'a> {
    Expected {
        session_id: &doc.binding.session_id,
        kiosk_id: &doc.binding.kiosk_id,
        card,
        kind: doc.binding.kind,
        copies: doc.binding.copies,
    }
}

/// A scratch file for poppler, removed when dropped; unique per process and call because
/// tests run in parallel.
struct TmpPdf(PathBuf);

impl TmpPdf {
    fn new(pdf: &[u8]) -> TmpPdf {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("kofu-render-{}-{n}.pdf", std::process::id());
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, pdf).expect("write temp pdf");
        TmpPdf(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TmpPdf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn poppler(tool: &str, args: &[&str]) -> String {
    let bin = format!("/usr/bin/{tool}");
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} is missing: install poppler-utils to run the certificate tests"
    );
    let out = Command::new(&bin).args(args).output().expect("run poppler");
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("poppler prints utf-8")
}

/// Text of the whole document, or of one page.
fn pdftotext(pdf: &[u8], page: Option<u32>) -> String {
    let file = TmpPdf::new(pdf);
    let page = page.map(|p| p.to_string());
    let mut args = Vec::new();
    if let Some(p) = &page {
        args.extend(["-f", p.as_str(), "-l", p.as_str()]);
    }
    args.extend([file.path(), "-"]);
    poppler("pdftotext", &args)
}

fn pdfinfo(pdf: &[u8]) -> String {
    let file = TmpPdf::new(pdf);
    poppler("pdfinfo", &[file.path()])
}

fn info_pages(info: &str) -> u32 {
    info.lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("pdfinfo reports pages")
}

fn assert_common(text: &str, kind: CertKind, record: &ResidentRecord) {
    for needle in [
        record.full_name.as_str(),
        kind.title(),
        "Serial: 131041-20261121-000042",
        "Issued: 2026-11-21",
        "Issued by the Mayor of Shinjuku City, Tokyo",
        "Municipality code: 131041",
        "Copies: 2",
        "Requested by Yuki Tanaka",
        "Valid only with the issuer's binding signature",
    ] {
        assert!(
            text.contains(needle),
            "{kind}: {needle:?} missing in:\n{text}"
        );
    }
    assert!(!text.contains(STRANGER), "{kind}: a stranger's name leaked");
    assert!(
        !text.contains("Osaka"),
        "{kind}: a stranger's address leaked"
    );
}

#[test]
fn residence_shows_holder_and_own_household_only() {
    let rec = tanaka();
    let doc = render(&issuer(), &request(&rec, CertKind::Residence));
    assert_eq!(doc.pages, 1);
    let text = pdftotext(&doc.pdf, None);
    assert_common(&text, CertKind::Residence, &rec);
    for needle in [
        "Date of birth: 1981-09-17",
        "Address: 3-14-1 Nishi-Shinjuku (Bldg A), Shinjuku-ku, Tokyo 160-0023",
        "1. Hiroshi Tanaka - Head of household - born 1978-04-02",
        "3. Sora Tanaka - Child - born 2010-01-30",
        "Mei Tanaka",
        "Page 1/1",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
}

#[test]
fn seal_shows_registration() {
    let rec = tanaka();
    let doc = render(&issuer(), &request(&rec, CertKind::Seal));
    let text = pdftotext(&doc.pdf, None);
    assert_common(&text, CertKind::Seal, &rec);
    for needle in [
        "Registration number: SEAL-131041-000123",
        "Registration date: 2015-03-01",
        "Date of birth: 1981-09-17",
        "Address: 3-14-1",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
    // The seal certificate is about the holder alone.
    assert!(!text.contains("Hiroshi Tanaka"));
}

#[test]
fn seal_in_another_state_says_so() {
    let mut rec = tanaka();
    rec.seal = Seal::Revoked {
        number: "SEAL-131041-000123".to_owned(),
        revoked_on: date(2026, 11, 20),
    };
    let text = pdftotext(&render_pdf(&request(&rec, CertKind::Seal)), None);
    assert!(text.contains("Status: revoked on 2026-11-20"), "{text}");
    assert!(text.contains("does not certify a valid seal registration"));
    rec.seal = Seal::NotRegistered;
    let text = pdftotext(&render_pdf(&request(&rec, CertKind::Seal)), None);
    assert!(text.contains("Status: no seal is registered"), "{text}");
}

#[test]
fn tax_shows_amounts() {
    let rec = tanaka();
    let doc = render(&issuer(), &request(&rec, CertKind::Tax));
    let text = pdftotext(&doc.pdf, None);
    assert_common(&text, CertKind::Tax, &rec);
    for needle in [
        "Fiscal year: 2025",
        "Total income: 5,230,000 yen",
        "Municipal tax: 214,300 yen",
        "Prefectural tax: 142,900 yen",
        "Total tax: 357,200 yen",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
    let mut rec = tanaka();
    rec.tax = None;
    let text = pdftotext(&render_pdf(&request(&rec, CertKind::Tax)), None);
    assert!(text.contains("No taxation record is on file"), "{text}");
}

#[test]
fn family_register_has_one_page_per_member_each_stamped() {
    let rec = tanaka();
    let doc = render(&issuer(), &request(&rec, CertKind::FamilyRegister));
    let n = doc.pages;
    assert!(
        n > rec.household.len() as u32,
        "cover plus one page per member"
    );
    assert_eq!(info_pages(&pdfinfo(&doc.pdf)), n);
    let text = pdftotext(&doc.pdf, None);
    assert_common(&text, CertKind::FamilyRegister, &rec);
    for i in 1..=n {
        let page = pdftotext(&doc.pdf, Some(i));
        for needle in [
            format!("Page {i}/{n}"),
            format!("Serial: {SERIAL}"),
            "Requested by Yuki Tanaka".to_owned(),
            CertKind::FamilyRegister.title().to_owned(),
        ] {
            assert!(page.contains(&needle), "page {i}: {needle:?} missing");
        }
        assert!(!page.contains(STRANGER));
    }
    // After the cover, member k has page k + 1 to themselves.
    for (k, m) in rec.household.iter().enumerate() {
        let page = pdftotext(&doc.pdf, Some(k as u32 + 2));
        assert!(page.contains(&format!("Full name: {}", m.full_name)));
        for (j, other) in rec.household.iter().enumerate() {
            if j != k && other.full_name != rec.full_name {
                assert!(!page.contains(&other.full_name), "page of {k} names {j}");
            }
        }
    }
    assert_eq!(text.matches("Page ").count() as u32, n);
}

#[test]
fn a_household_too_long_for_one_page_continues_with_headers() {
    let mut rec = tanaka();
    rec.household = (0..60)
        .map(|i| {
            member(
                &format!("Member{i} Tanaka"),
                Relation::Child,
                date(2000, 1, 1),
            )
        })
        .collect();
    let doc = render(&issuer(), &request(&rec, CertKind::Residence));
    assert!(doc.pages >= 2);
    assert_eq!(info_pages(&pdfinfo(&doc.pdf)), doc.pages);
    let text = pdftotext(&doc.pdf, None);
    for i in 0..60 {
        assert!(text.contains(&format!("Member{i} Tanaka")));
    }
    for i in 1..=doc.pages {
        let page = pdftotext(&doc.pdf, Some(i));
        assert!(page.contains(&format!("Page {i}/{}", doc.pages)));
        assert!(page.contains(SERIAL));
    }
}

#[test]
fn a_strangers_certificate_names_no_tanaka() {
    let rec = watanabe();
    for kind in CertKind::ALL {
        let text = pdftotext(&render_pdf(&request(&rec, kind)), None);
        assert!(text.contains(STRANGER), "{kind}");
        assert!(
            !text.contains("Tanaka") && !text.contains("Shinjuku"),
            "{kind}"
        );
    }
}

#[test]
fn latin_letters_and_pdf_delimiters_survive_extraction() {
    let mut rec = tanaka();
    rec.full_name = "Renée Müller-Ōno".to_owned();
    rec.address = r"1-2 Kanda (rear) \ annex, Chiyoda-ku".to_owned();
    let text = pdftotext(&render_pdf(&request(&rec, CertKind::Residence)), None);
    // WinAnsi has é and ü; the macron is dropped as in passport romanization.
    assert!(text.contains("Full name: Renée Müller-Ono"), "{text}");
    assert!(text.contains(r"1-2 Kanda (rear) \ annex"), "{text}");
}

#[test]
fn info_title_set_and_no_creation_date() {
    let rec = tanaka();
    for kind in CertKind::ALL {
        let pdf = render_pdf(&request(&rec, kind));
        let info = pdfinfo(&pdf);
        assert!(
            info.contains(&format!("Title:           {}", kind.title())),
            "{info}"
        );
        assert!(!info.contains("CreationDate"));
        let raw = String::from_utf8_lossy(&pdf);
        assert!(!raw.contains("/CreationDate") && raw.contains("/ID ["));
    }
}

#[test]
fn rendering_is_deterministic_and_serial_sensitive() {
    let rec = tanaka();
    let issuer = issuer();
    for kind in CertKind::ALL {
        let a = render(&issuer, &request(&rec, kind));
        let b = render(&issuer, &request(&rec, kind));
        assert_eq!(a.pdf, b.pdf, "{kind}");
        assert_eq!(a.binding_b64, b.binding_b64);
        assert_eq!(a.signature_b64, b.signature_b64);
        assert_eq!(render_pdf(&request(&rec, kind)), a.pdf.to_vec());

        let other = RenderRequest {
            serial: "131041-20261121-000043",
            ..request(&rec, kind)
        };
        assert_ne!(render_pdf(&other), a.pdf.to_vec(), "{kind}");
        let newer = rec.with_address("9-9 Yotsuya, Shinjuku-ku, Tokyo".to_owned());
        assert_ne!(render_pdf(&request(&newer, kind)), a.pdf.to_vec(), "{kind}");
    }
}

#[test]
fn binding_is_correct_and_verifies() {
    let rec = tanaka();
    let issuer = issuer();
    for kind in CertKind::ALL {
        let doc = render(&issuer, &request(&rec, kind));
        let b = &doc.binding;
        assert_eq!(b.doc_sha256, hex::encode(Sha256::digest(&doc.pdf)));
        assert_eq!(
            (
                b.v,
                b.serial.as_str(),
                b.session_id.as_str(),
                b.kiosk_id.as_str()
            ),
            (1, SERIAL, SESSION, KIOSK)
        );
        assert_eq!(b.card_digest, rec.card_id.digest());
        assert_eq!((b.kind, b.copies, b.record_version), (kind, 2, 7));
        assert_eq!(b.issued_at, ISSUED_AT);
        assert_eq!(doc.binding_b64, kofu_proto::b64url(&b.to_bytes()));

        let pk = kofu_proto::verify::issuer_key(&issuer.public_key_b64()).expect("issuer key");
        assert_eq!(pk.to_bytes(), issuer.public_key());
        let exp = expected(&doc, &rec.card_id);
        let verified = verify_release(&pk, &doc.pdf, &doc.binding_b64, &doc.signature_b64, &exp);
        assert_eq!(verified.as_ref(), Ok(b));
        assert!(self_check(&pk, &doc, &exp));
    }
}

#[test]
fn self_check_refuses_every_tampering() {
    let rec = tanaka();
    let issuer = issuer();
    let pk = issuer.verifying_key();
    let doc = render(&issuer, &request(&rec, CertKind::Residence));
    let exp = expected(&doc, &rec.card_id);
    assert!(self_check(&pk, &doc, &exp));

    let mut body = doc.pdf.to_vec();
    let at = body.len() / 2;
    body[at] ^= 1;
    let mut tampered_body = doc.clone();
    tampered_body.document.pdf = body.into();
    assert!(!self_check(&pk, &tampered_body, &exp));

    // Another document's body under this document's signed binding.
    let other = render(&issuer, &request(&rec, CertKind::Tax));
    let mut swapped = doc.clone();
    swapped.document.pdf = other.pdf.clone();
    assert!(!self_check(&pk, &swapped, &exp));

    let mut forged: Binding = doc.binding.clone();
    forged.session_id = "s-someone-else".to_owned();
    let mut forged_header = doc.clone();
    forged_header.document.binding_b64 = kofu_proto::b64url(&forged.to_bytes());
    forged_header.binding = forged;
    assert!(!self_check(&pk, &forged_header, &exp));

    // The header is genuine but the struct the actor would read from differs.
    let mut stale = doc.clone();
    stale.binding.record_version = 6;
    assert!(!self_check(&pk, &stale, &exp));

    let wrong_kiosk = Expected {
        kiosk_id: "SEJ-99999-0000-01",
        ..exp.clone()
    };
    assert!(!self_check(&pk, &doc, &wrong_kiosk));
    let stranger_card = watanabe().card_id;
    assert!(!self_check(&pk, &doc, &expected(&doc, &stranger_card)));
    let other_issuer = Issuer::from_seed([43; 32]).verifying_key();
    assert!(!self_check(&other_issuer, &doc, &exp));
    assert_eq!(
        verify_release(
            &other_issuer,
            &doc.pdf,
            &doc.binding_b64,
            &doc.signature_b64,
            &exp
        ),
        Err(VerifyError::Signature)
    );
}

#[test]
fn debug_output_carries_no_personal_data() {
    let rec = tanaka();
    let issuer = issuer();
    let req = request(&rec, CertKind::FamilyRegister);
    let doc = render(&issuer, &req);
    for text in [
        format!("{doc:?}"),
        format!("{req:?}"),
        format!("{issuer:?}"),
    ] {
        assert!(
            !text.contains("Tanaka") && !text.contains("0123456789ABCDEF"),
            "{text}"
        );
    }
}

#[test]
fn samples_for_eyeballing() {
    // Left in the target tmp dir (never the repo) for a human to open.
    let rec = tanaka();
    for kind in CertKind::ALL {
        let pdf = render_pdf(&request(&rec, kind));
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("sample-{kind}.pdf"));
        std::fs::write(path, pdf).expect("write sample");
    }
}
