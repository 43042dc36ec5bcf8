//! The text encoding contract and the fonts: every string is a UTF-16BE hex operand of
//! a predefined Adobe-Japan1 CID font (not embedded), every name is one operand exactly
//! as `kofu_proto::doctext::name_pattern` says, every character the population can
//! produce is in the fonts' character collection, and the bytes are deterministic.

mod common;

use std::collections::HashMap;

use common::*;
use kofu_proto::CertKind;
use kofu_proto::doctext::name_pattern;
use kofu_render::{RenderRequest, render, render_pdf};

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn every_name_is_one_operand_under_its_pattern() {
    let rec = takahashi();
    for kind in CertKind::ALL {
        let pdf = render_pdf(&request(&rec, kind));
        assert!(
            find(&pdf, &name_pattern(HOLDER)),
            "{kind}: holder's pattern"
        );
        assert!(!find(&pdf, &name_pattern(STRANGER)), "{kind}");
        let household = matches!(kind, CertKind::Residence | CertKind::FamilyRegister);
        for m in &rec.household {
            assert_eq!(
                find(&pdf, &name_pattern(&m.full_name)),
                household || m.full_name == HOLDER
            );
        }
        // Family name or given name alone never appears as an operand of its own.
        for part in HOLDER.split(' ') {
            assert!(!find(&pdf, &name_pattern(part)), "{kind}: {part}");
        }
    }
}

#[test]
fn fonts_are_predefined_japan1_cid_fonts_not_embedded() {
    let pdf = render_pdf(&request(&takahashi(), CertKind::Residence));
    let file = TmpFile::new(&pdf, "pdf");
    let fonts = String::from_utf8(poppler("pdffonts", &[file.path()])).expect("utf-8");
    for name in ["HeiseiMin-W3", "HeiseiKakuGo-W5"] {
        let line = fonts.lines().find(|l| l.starts_with(name)).expect(name);
        assert!(
            line.contains("CID Type 0") && line.contains("UniJIS-UTF16-H"),
            "{line}"
        );
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols[cols.len() - 5..cols.len() - 2],
            ["no", "no", "no"],
            "{line}"
        );
    }
    let raw = String::from_utf8_lossy(&pdf);
    assert!(raw.contains("/Ordering (Japan1)") && raw.contains("/Supplement 2"));
    assert!(!raw.contains("/FontFile"), "no font program is embedded");
}

/// The highest CID of Adobe-Japan1-2, the collection every Heisei font covers.
const JAPAN1_2_MAX_CID: u32 = 8719;

/// The Unicode to CID mapping of `UniJIS-UTF16-H` from poppler-data, BMP part.
fn unijis_cids() -> HashMap<u32, u32> {
    let path = "/usr/share/poppler/cMap/Adobe-Japan1/UniJIS-UTF16-H";
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (install poppler-data)"));
    let hex = |s: &str| u32::from_str_radix(s.trim_matches(['<', '>']), 16).ok();
    let mut map = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [a, b, cid] if a.len() == 6 && b.len() == 6 => {
                if let (Some(a), Some(b), Ok(cid)) = (hex(a), hex(b), cid.parse::<u32>()) {
                    for u in a..=b {
                        map.insert(u, cid + (u - a));
                    }
                }
            }
            [a, cid] if a.len() == 6 => {
                if let (Some(a), Ok(cid)) = (hex(a), cid.parse::<u32>()) {
                    map.insert(a, cid);
                }
            }
            _ => {}
        }
    }
    map
}

#[test]
fn every_population_character_is_in_adobe_japan1_2() {
    let cids = unijis_cids();
    assert!(cids.len() > 10_000, "the CMap was not read");
    let mut text: String = kofu_core::population::characters().into_iter().collect();
    // And everything the layouts print.
    let rec = takahashi();
    for kind in CertKind::ALL {
        text.push_str(&pdftotext(&render_pdf(&request(&rec, kind)), None));
    }
    let mut missing = Vec::new();
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '\u{c}') {
        match cids.get(&(c as u32)) {
            Some(&cid) if cid > 0 && cid <= JAPAN1_2_MAX_CID => {}
            other => missing.push(format!("{c} U+{:04X} -> {other:?}", c as u32)),
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "outside Adobe-Japan1-2:\n{}",
        missing.join("\n")
    );
    // The check has teeth: 﨑 (as in 山﨑) is Adobe-Japan1-4 and kept out of the lists.
    assert!(cids.get(&0xFA11).is_some_and(|&cid| cid > JAPAN1_2_MAX_CID));
}

#[test]
fn rendering_is_deterministic_and_serial_sensitive() {
    let rec = takahashi();
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
        let newer = rec.with_address("〒160-0004 東京都新宿区四谷一丁目1番1号".to_owned());
        assert_ne!(render_pdf(&request(&newer, kind)), a.pdf.to_vec(), "{kind}");
    }
}

#[test]
fn content_streams_stay_uncompressed() {
    // Verifiers search the raw bytes for name patterns: no filter may hide them.
    let pdf = render_pdf(&request(&takahashi(), CertKind::FamilyRegister));
    assert!(!String::from_utf8_lossy(&pdf).contains("/Filter"));
}
