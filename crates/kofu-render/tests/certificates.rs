//! Checks the rendered certificates the way a kiosk and a reader would: the text that
//! poppler's `pdftotext` extracts (Japanese, with the holder's kanji name, the kind's
//! title, the serial and the dates), page by page for the multi-page family register.

mod common;

use common::*;
use kofu_core::records::{Relation, Seal, Sex};
use kofu_proto::CertKind;
use kofu_render::{render, render_pdf};

/// Whether the text names `name` (spaces between its characters aside, since
/// pdftotext may space CJK glyphs) as a whole: no letter or ideograph right before or
/// after it.
fn names(text: &str, name: &str) -> bool {
    let squeezed: Vec<char> = text.chars().filter(|c| *c != ' ').collect();
    let want: Vec<char> = name.chars().filter(|c| *c != ' ').collect();
    squeezed.windows(want.len()).enumerate().any(|(i, w)| {
        let before = i.checked_sub(1).and_then(|j| squeezed.get(j));
        let after = squeezed.get(i + want.len());
        w == want.as_slice()
            && !before.is_some_and(|c| c.is_alphanumeric())
            && !after.is_some_and(|c| c.is_alphanumeric())
    }) || text.contains(name)
}

fn assert_common(text: &str, kind: CertKind) {
    for needle in [
        HOLDER,
        kind.title(),
        SERIAL,
        // The issue date: ISO in the header for machines, 和暦 where people read it.
        "2026-11-21",
        "令和8年11月21日",
        "証明書番号",
        "新宿区長",
        "131041",
        "2通",
        "Kofu-Binding, Kofu-Signature",
    ] {
        assert!(
            text.contains(needle),
            "{kind}: {needle:?} missing in:\n{text}"
        );
    }
    assert!(!names(text, STRANGER), "{kind}: a stranger's name leaked");
    assert!(
        !text.contains(STRANGER_TOWN),
        "{kind}: a stranger's address leaked"
    );
}

#[test]
fn every_kind_names_holder_title_serial_and_dates() {
    let rec = takahashi();
    for kind in CertKind::ALL {
        let text = pdftotext(&render_pdf(&request(&rec, kind)), None);
        assert_common(&text, kind);
        assert!(names(&text, HOLDER), "{kind}");
    }
}

/// The Takahashi household's certificate of `kind`: its pages, and its text as
/// poppler extracts it.
fn takahashis(kind: CertKind) -> (kofu_render::Rendered, String) {
    let doc = render(&issuer(), &request(&takahashi(), kind));
    let text = pdftotext(&doc.pdf, None);
    (doc, text)
}

/// Every one of `needles` is in `text`.
fn shows(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
}

#[test]
fn residence_lists_the_household_with_relations() {
    let (doc, text) = takahashis(CertKind::Residence);
    assert_eq!(doc.pages, 1);
    shows(
        &text,
        &[
            "住所 〒160-0023 東京都新宿区西新宿三丁目14番1-305号",
            "世帯主 髙橋 浩",
            "髙橋 浩 昭和53年4月2日生 男 世帯主",
            "髙橋 由紀 昭和56年9月17日生 女 妻",
            "髙橋 蒼空 平成22年1月30日生 男 子",
            "髙橋 さくら 平成26年6月8日生 女 子",
            "タカハシ ヒロシ",
            "タカハシ サクラ",
            "この写しは、世帯全員の住民票の原本と相違ないことを証明する。",
            "頁 1/1",
        ],
    );
}

#[test]
fn relations_follow_sex_and_age() {
    let mut rec = takahashi();
    rec.household = vec![
        member(
            "髙橋 由紀",
            "タカハシ ユキ",
            Sex::Female,
            Relation::Head,
            date(1981, 9, 17),
        ),
        member(
            "髙橋 浩",
            "タカハシ ヒロシ",
            Sex::Male,
            Relation::Spouse,
            date(1978, 4, 2),
        ),
        member(
            "髙橋 ハナ",
            "タカハシ ハナ",
            Sex::Female,
            Relation::Parent,
            date(1950, 1, 1),
        ),
        member(
            "髙橋 翔太",
            "タカハシ ショウタ",
            Sex::Male,
            Relation::Sibling,
            date(1985, 1, 1),
        ),
        member(
            "髙橋 恵子",
            "タカハシ ケイコ",
            Sex::Female,
            Relation::Sibling,
            date(1979, 1, 1),
        ),
    ];
    let text = pdftotext(&render_pdf(&request(&rec, CertKind::Residence)), None);
    shows(&text, &["男 夫", "女 母", "男 弟", "女 姉", "女 世帯主"]);
}

#[test]
fn seal_shows_registration_and_the_impression_frame() {
    let (doc, text) = takahashis(CertKind::Seal);
    shows(
        &text,
        &[
            "印影",
            "氏名 髙橋 由紀",
            "生年月日 昭和56年9月17日",
            "登録番号 SEAL-131041-000123",
            "登録年月日 平成27年3月1日",
            "この写しは、登録されている印影と相違ないことを証明する。",
        ],
    );
    // The seal certificate is about the holder alone.
    assert!(!names(&text, "髙橋 浩"), "{text}");
    assert!(
        String::from_utf8_lossy(&doc.pdf).contains(" re S"),
        "no frame drawn"
    );
}

#[test]
fn seal_in_another_state_says_so() {
    let mut rec = takahashi();
    rec.seal = Seal::Revoked {
        number: "SEAL-131041-000123".to_owned(),
        revoked_on: date(2026, 11, 20),
    };
    let text = pdftotext(&render_pdf(&request(&rec, CertKind::Seal)), None);
    assert!(text.contains("登録状況 令和8年11月20日 廃止"), "{text}");
    assert!(
        text.contains("この書面は印鑑登録を証明するものではありません。"),
        "{text}"
    );
    assert!(!text.contains("印影"), "{text}");
    rec.seal = Seal::NotRegistered;
    let text = pdftotext(&render_pdf(&request(&rec, CertKind::Seal)), None);
    assert!(text.contains("印鑑登録はありません"), "{text}");
}

#[test]
fn tax_shows_fiscal_year_income_and_taxes() {
    let (_, text) = takahashis(CertKind::Tax);
    shows(
        &text,
        &[
            "年度 令和7年度（令和6年中の所得）",
            "総所得金額 5,230,000円",
            "特別区民税 214,300円",
            "都民税 142,900円",
            "年税額合計 357,200円",
            "上記のとおり相違ないことを証明する。",
        ],
    );
    let mut outside_tokyo = takahashi();
    outside_tokyo.municipality.name = "神奈川県横浜市".to_owned();
    let text = pdftotext(&render_pdf(&request(&outside_tokyo, CertKind::Tax)), None);
    assert!(text.contains("市町村民税 214,300円") && text.contains("県民税 142,900円"));
    assert!(text.contains("横浜市長"), "{text}");
    let mut none = takahashi();
    none.tax = None;
    let text = pdftotext(&render_pdf(&request(&none, CertKind::Tax)), None);
    assert!(text.contains("課税記録はありません"), "{text}");
}

#[test]
fn family_register_has_a_page_per_member_each_stamped() {
    let rec = takahashi();
    let doc = render(&issuer(), &request(&rec, CertKind::FamilyRegister));
    let n = doc.pages;
    assert_eq!(
        n,
        rec.household.len() as u32 + 1,
        "cover plus one page per member"
    );
    assert_eq!(info_pages(&pdfinfo(&doc.pdf)), n);
    let text = pdftotext(&doc.pdf, None);
    assert_common(&text, CertKind::FamilyRegister);
    assert!(
        text.contains("本籍 東京都新宿区西新宿三丁目14番1-305号"),
        "{text}"
    );
    assert!(text.contains("これは、戸籍に記録されている事項の全部を証明した書面である。"));
    for i in 1..=n {
        let page = pdftotext(&doc.pdf, Some(i));
        for needle in [
            format!("頁 {i}/{n}"),
            SERIAL.to_owned(),
            format!("請求者 {HOLDER}"),
            CertKind::FamilyRegister.title().to_owned(),
        ] {
            assert!(
                page.contains(&needle),
                "page {i}: {needle:?} missing in\n{page}"
            );
        }
        assert_eq!(page.matches("頁 ").count(), 1, "page {i}");
        assert!(!names(&page, STRANGER));
    }
    // After the cover, member k has page k + 2 to themselves.
    let relations = ["筆頭者", "妻", "長男", "長女"];
    for (k, m) in rec.household.iter().enumerate() {
        let page = pdftotext(&doc.pdf, Some(k as u32 + 2));
        assert!(page.contains(&format!("氏名 {}", m.full_name)), "{page}");
        assert!(page.contains(&format!("続柄 {}", relations[k])), "{page}");
        for (j, other) in rec.household.iter().enumerate() {
            if j != k && other.full_name != rec.full_name {
                assert!(!names(&page, &other.full_name), "page of {k} names {j}");
            }
        }
    }
}

#[test]
fn a_household_too_long_for_one_page_continues_with_headers() {
    let mut rec = takahashi();
    rec.household = (0..60)
        .map(|i| {
            member(
                &format!("髙橋 子{i}"),
                "タカハシ コ",
                Sex::Female,
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
        assert!(names(&text, &format!("髙橋 子{i}")), "member {i}");
    }
    for i in 1..=doc.pages {
        let page = pdftotext(&doc.pdf, Some(i));
        assert!(page.contains(&format!("頁 {i}/{}", doc.pages)), "{page}");
        assert!(page.contains(SERIAL) && page.contains(HOLDER));
    }
}

#[test]
fn a_strangers_certificate_names_no_takahashi() {
    let rec = watanabe();
    for kind in CertKind::ALL {
        let text = pdftotext(&render_pdf(&request(&rec, kind)), None);
        assert!(names(&text, STRANGER), "{kind}");
        assert!(text.contains("大阪市長"), "{kind}");
        assert!(!text.contains("髙橋") && !text.contains("新宿"), "{kind}");
    }
}

#[test]
fn the_issue_date_is_the_day_in_japan() {
    let rec = takahashi();
    let late = kofu_render::RenderRequest {
        issued_at: "2026-11-21T16:30:00Z",
        ..request(&rec, CertKind::Residence)
    };
    let text = pdftotext(&render_pdf(&late), None);
    assert!(text.contains("令和8年11月22日"), "{text}");
    assert!(text.contains("2026-11-21T16:30:00Z"), "{text}");
}

#[test]
fn control_characters_and_pdf_delimiters_survive_extraction() {
    let mut rec = takahashi();
    rec.address = "〒100-0001 東京都千代田区(裏) \\ 別館\n二階\t奥".to_owned();
    let text = pdftotext(&render_pdf(&request(&rec, CertKind::Residence)), None);
    assert!(
        text.contains("東京都千代田区(裏) \\ 別館 二階 奥"),
        "{text}"
    );
}

#[test]
fn info_title_is_japanese_and_there_is_no_creation_date() {
    let rec = takahashi();
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
fn samples_look_like_certificates() {
    // Left in the target tmp dir (never the repo) for a human to open; pdftoppm must
    // turn every page into a picture (the README says how to look at them).
    let rec = takahashi();
    for kind in CertKind::ALL {
        let pdf = render_pdf(&request(&rec, kind));
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join(format!("sample-{kind}.pdf"));
        std::fs::write(&path, &pdf).expect("write sample");
        let prefix = dir.join(format!("sample-{kind}"));
        let (path, prefix) = (
            path.to_str().expect("utf-8"),
            prefix.to_str().expect("utf-8"),
        );
        poppler(
            "pdftoppm",
            &["-png", "-r", "40", "-f", "1", "-l", "1", path, prefix],
        );
        let png = std::fs::read(format!("{prefix}-1.png"))
            .or_else(|_| std::fs::read(format!("{prefix}-01.png")))
            .expect("pdftoppm wrote page 1");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 2_000, "{kind}");
    }
}
