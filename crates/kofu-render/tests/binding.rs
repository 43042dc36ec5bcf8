//! The signed binding of every certificate, checked with the protocol's own verifier,
//! and the release self-check refusing every tampering.

mod common;

use common::{ISSUED_AT, KIOSK, SERIAL, SESSION, expected, issuer, request, takahashi, watanabe};
use kofu_proto::Document;
use kofu_proto::verify::{Expected, IssuerKeys, VerifyError, verify_release};
use kofu_proto::{Binding, CertKind};
use kofu_render::{Issuer, Rendered, render, self_check};
use sha2::{Digest, Sha256};

#[test]
fn binding_is_correct_and_verifies() {
    let rec = takahashi();
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
        assert_eq!(b.kid, kofu_proto::verify::key_id(&pk));
        let pk = IssuerKeys::single(pk);
        let exp = expected(&doc, &rec.card_id);
        let verified = verify_release(&pk, &doc.pdf, &doc.binding_b64, &doc.signature_b64, &exp);
        assert_eq!(verified.as_ref(), Ok(b));
        assert!(self_check(&pk, &doc, &exp));
    }
}

#[test]
fn self_check_refuses_every_tampering() {
    let rec = takahashi();
    let issuer = issuer();
    let pk = issuer.keys();
    let doc = render(&issuer, &request(&rec, CertKind::Residence));
    let exp = expected(&doc, &rec.card_id);
    assert!(self_check(&pk, &doc, &exp));

    let mut body = doc.pdf.to_vec();
    let at = body.len() / 2;
    body[at] ^= 1;
    let tampered_body = Rendered {
        document: Document {
            pdf: body.into(),
            ..doc.document.clone()
        },
        ..doc.clone()
    };
    assert!(!self_check(&pk, &tampered_body, &exp));

    // Another document's body under this document's signed binding.
    let other = render(&issuer, &request(&rec, CertKind::Tax));
    let swapped = Rendered {
        document: Document {
            pdf: other.pdf.clone(),
            ..doc.document.clone()
        },
        ..doc.clone()
    };
    assert!(!self_check(&pk, &swapped, &exp));

    let mut forged: Binding = doc.binding.clone();
    forged.session_id = "s-someone-else".to_owned();
    let forged_header = Rendered {
        document: Document {
            binding_b64: kofu_proto::b64url(&forged.to_bytes()),
            ..doc.document.clone()
        },
        binding: forged,
        ..doc.clone()
    };
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
    let other_issuer = Issuer::from_seed([43; 32]).keys();
    assert!(!self_check(&other_issuer, &doc, &exp));
    assert_eq!(
        verify_release(
            &other_issuer,
            &doc.pdf,
            &doc.binding_b64,
            &doc.signature_b64,
            &exp
        ),
        Err(VerifyError::UnknownKey)
    );
}

#[test]
fn a_rotated_issuer_signs_with_the_new_key_under_its_id() {
    let rec = takahashi();
    let issuer = issuer();
    let (old_kid, old_key) = (issuer.kid(), issuer.verifying_key());
    let before = render(&issuer, &request(&rec, CertKind::Residence));
    issuer.rotate_to([44; 32]);
    assert_ne!(issuer.kid(), old_kid);
    let after = render(&issuer, &request(&rec, CertKind::Residence));
    assert_eq!(before.binding.kid, old_kid);
    assert_eq!(after.binding.kid, issuer.kid());
    // The body does not depend on the key: only the binding and its signature do.
    assert_eq!(before.pdf, after.pdf);
    let both = IssuerKeys::new([old_key, issuer.verifying_key()]);
    for doc in [&before, &after] {
        assert!(self_check(&both, doc, &expected(doc, &rec.card_id)));
    }
    assert!(!self_check(
        &IssuerKeys::single(old_key),
        &after,
        &expected(&after, &rec.card_id)
    ));
}

#[test]
fn debug_output_carries_no_personal_data() {
    let rec = takahashi();
    let issuer = issuer();
    let req = request(&rec, CertKind::FamilyRegister);
    let doc = render(&issuer, &req);
    for text in [
        format!("{doc:?}"),
        format!("{req:?}"),
        format!("{issuer:?}"),
    ] {
        assert!(
            !text.contains("髙橋") && !text.contains("0123456789ABCDEF"),
            "{text}"
        );
    }
}
