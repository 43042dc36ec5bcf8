//! Records, requests and poppler helpers shared by the certificate tests: a household
//! of four in Shinjuku and a stranger in Osaka who must never appear on its papers.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use kofu_core::records::{
    Date, Member, Municipality, Relation, ResidentRecord, Seal, Sex, TaxRecord,
};
use kofu_proto::verify::Expected;
use kofu_proto::{CardId, CertKind};
use kofu_render::{Issuer, RenderRequest, Rendered};

pub const SERIAL: &str = "131041-20261121-000042";
pub const ISSUED_AT: &str = "2026-11-21T09:00:00Z";
pub const SESSION: &str = "s0123-AbCdEfGhIjKlMnOpQrStUvWxYz012345";
pub const KIOSK: &str = "SEJ-13104-0042-01";
/// The holder: the head's wife, whose family name has a character (髙) outside the
/// basic JIS set, as registries keep it.
pub const HOLDER: &str = "髙橋 由紀";
/// Lives in another household; must never appear on the Takahashis' documents.
pub const STRANGER: &str = "渡邉 健二";
pub const STRANGER_TOWN: &str = "梅田";

pub fn date(year: u16, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

pub fn member(name: &str, kana: &str, sex: Sex, relation: Relation, birth: Date) -> Member {
    Member {
        full_name: name.to_owned(),
        full_name_kana: kana.to_owned(),
        sex,
        birth_date: birth,
        relation,
    }
}

pub fn household() -> Vec<Member> {
    vec![
        member(
            "髙橋 浩",
            "タカハシ ヒロシ",
            Sex::Male,
            Relation::Head,
            date(1978, 4, 2),
        ),
        member(
            "髙橋 由紀",
            "タカハシ ユキ",
            Sex::Female,
            Relation::Spouse,
            date(1981, 9, 17),
        ),
        member(
            "髙橋 蒼空",
            "タカハシ ソラ",
            Sex::Male,
            Relation::Child,
            date(2010, 1, 30),
        ),
        member(
            "髙橋 さくら",
            "タカハシ サクラ",
            Sex::Female,
            Relation::Child,
            date(2014, 6, 8),
        ),
    ]
}

pub fn takahashi() -> ResidentRecord {
    ResidentRecord {
        card_id: CardId::parse("0123456789ABCDEF").expect("valid card id"),
        version: 7,
        full_name: HOLDER.to_owned(),
        full_name_kana: "タカハシ ユキ".to_owned(),
        sex: Sex::Female,
        birth_date: date(1981, 9, 17),
        relation: Relation::Spouse,
        address: "〒160-0023 東京都新宿区西新宿三丁目14番1-305号".to_owned(),
        municipality: Municipality {
            code: "131041".to_owned(),
            name: "東京都新宿区".to_owned(),
        },
        household_id: "H-000123".to_owned(),
        household: household(),
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

pub fn watanabe() -> ResidentRecord {
    let me = member(
        STRANGER,
        "ワタナベ ケンジ",
        Sex::Male,
        Relation::Head,
        date(1990, 12, 1),
    );
    ResidentRecord {
        card_id: CardId::parse("00000000000000AA").expect("valid card id"),
        version: 3,
        full_name: STRANGER.to_owned(),
        full_name_kana: me.full_name_kana.clone(),
        sex: Sex::Male,
        birth_date: date(1990, 12, 1),
        relation: Relation::Head,
        address: "〒530-0001 大阪府大阪市北区梅田一丁目1番1号".to_owned(),
        municipality: Municipality {
            code: "271004".to_owned(),
            name: "大阪府大阪市".to_owned(),
        },
        household_id: "H-000999".to_owned(),
        household: vec![me],
        seal: Seal::NotRegistered,
        tax: None,
        restricted: false,
        card_revoked: false,
        card_public_key: [5; 32],
    }
}

pub fn request(record: &ResidentRecord, kind: CertKind) -> RenderRequest<'_> {
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

pub fn issuer() -> Issuer {
    Issuer::from_seed([42; 32])
}

pub fn expected<'a>(doc: &'a Rendered, card: &'a CardId) -> Expected<'a> {
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
pub struct TmpFile(PathBuf);

impl TmpFile {
    pub fn new(bytes: &[u8], ext: &str) -> TmpFile {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("kofu-render-{}-{n}.{ext}", std::process::id());
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, bytes).expect("write temp file");
        TmpFile(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn poppler(tool: &str, args: &[&str]) -> Vec<u8> {
    let bin = format!("/usr/bin/{tool}");
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} is missing: install poppler-utils and poppler-data to run the certificate tests"
    );
    let out = Command::new(&bin).args(args).output().expect("run poppler");
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Text of the whole document or of one page, as `pdftotext -layout` extracts it (the
/// mode kiosks and the test kit use), with runs of spaces collapsed.
pub fn pdftotext(pdf: &[u8], page: Option<u32>) -> String {
    let file = TmpFile::new(pdf, "pdf");
    let page = page.map(|p| p.to_string());
    let mut args = vec!["-layout"];
    if let Some(p) = &page {
        args.extend(["-f", p.as_str(), "-l", p.as_str()]);
    }
    args.extend([file.path(), "-"]);
    let text = String::from_utf8(poppler("pdftotext", &args)).expect("utf-8 text");
    collapse(&text)
}

/// Runs of spaces as one space (pdftotext -layout pads columns).
pub fn collapse(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split(' ').enumerate() {
        if i > 0 && !out.ends_with(' ') {
            out.push(' ');
        }
        out.push_str(part);
    }
    out
}

pub fn pdfinfo(pdf: &[u8]) -> String {
    let file = TmpFile::new(pdf, "pdf");
    String::from_utf8(poppler("pdfinfo", &[file.path()])).expect("utf-8 info")
}

pub fn info_pages(info: &str) -> u32 {
    info.lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("pdfinfo reports pages")
}
