//! Tests of what the population hands out besides residents: kiosk credentials, the
//! admin token, the fixture lines, and what `Debug` may show of them.

use super::*;

#[test]
fn kiosks_are_unique_and_well_formed() {
    let p = make(14, 10, 5_000);
    assert_eq!(p.kiosks.len(), 5_000);
    let mut seen = HashSet::new();
    let codes: HashSet<&str> = p.municipalities.iter().map(|m| &m.code[..5]).collect();
    for k in &p.kiosks {
        let id = k.kiosk_id.as_str();
        assert!(seen.insert(id.to_owned()), "{id}");
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.len(), 4, "{id}");
        assert!(CHAINS.contains(&parts[0]), "{id}");
        assert!(codes.contains(parts[1]), "{id}");
        assert!(parts[2].len() == 4 && parts[3].len() == 2, "{id}");
        assert_eq!(k.secret.len(), 32);
        assert!(kofu_proto::b64url_decode(&k.secret).is_some_and(|b| b.len() == 24));
        assert_eq!(k.token(), format!("{id}.{}", k.secret));
        let expected: [u8; 32] = Sha256::digest(k.secret.as_bytes()).into();
        assert_eq!(k.secret_hash(), expected);
    }
    let secrets: HashSet<&str> = p.kiosks.iter().map(|k| k.secret.as_str()).collect();
    assert_eq!(secrets.len(), p.kiosks.len());
}

/// As many kiosks as a spec allows: store numbers collide often, the fallbacks keep
/// every id unique.
#[test]
fn kiosk_ids_stay_unique_when_crowded() {
    let kiosks = kiosks(23, PopulationSpec::MAX_KIOSKS);
    let ids: HashSet<&str> = kiosks.iter().map(|k| k.kiosk_id.as_str()).collect();
    assert_eq!(ids.len(), PopulationSpec::MAX_KIOSKS as usize);
}

#[test]
fn kiosks_do_not_depend_on_residents() {
    let a = make(15, 10, 8);
    let b = make(15, 2_000, 8);
    assert!(a.kiosks == b.kiosks);
    assert_eq!(a.admin_token, b.admin_token);
}

#[test]
fn admin_token_shape() {
    let p = make(16, 1, 1);
    let rest = p.admin_token.strip_prefix("adm-").expect("adm- prefix");
    assert_eq!(rest.len(), 40);
    assert!(
        rest.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
}

#[test]
fn fixture_lines_follow_the_population() {
    let p = make(17, 200, 4);
    let lines = p.fixture_lines();
    assert_eq!(lines.len(), 200 + 4 + 1);
    for (r, line) in p.residents.iter().zip(&lines) {
        let FixtureLine::Card {
            card_id,
            full_name,
            full_name_kana,
            municipality_code,
            household_id,
            seal_registered,
            seal_revoked,
            card_revoked,
            restricted,
            tax_record,
            ..
        } = line
        else {
            panic!("expected a card line");
        };
        assert_eq!(card_id, r.card_id.expose());
        assert_eq!(full_name, &r.full_name);
        assert_eq!(full_name_kana, &r.full_name_kana);
        assert_eq!(municipality_code, &r.municipality.code);
        assert_eq!(household_id, &r.household_id);
        assert_eq!(*seal_registered, matches!(r.seal, Seal::Registered { .. }));
        assert_eq!(*seal_revoked, matches!(r.seal, Seal::Revoked { .. }));
        assert_eq!(*card_revoked, r.card_revoked);
        assert_eq!(*restricted, r.restricted);
        assert_eq!(*tax_record, r.tax.is_some());
    }
    for (k, line) in p.kiosks.iter().zip(&lines[200..204]) {
        let expected = FixtureLine::Kiosk {
            kiosk_id: k.kiosk_id.to_string(),
            token: k.token(),
        };
        assert_eq!(line, &expected);
    }
    let admin = FixtureLine::Admin {
        token: p.admin_token.clone(),
    };
    assert_eq!(lines.last(), Some(&admin));
    // The JSON form is what `kofu fixtures` prints.
    let json = serde_json::to_string(&lines[0]).expect("serialize");
    assert!(json.starts_with(r#"{"type":"card","card_id":""#), "{json}");
}

#[test]
fn debug_output_leaks_no_secrets() {
    let p = make(18, 3, 2);
    let shown = format!("{p:?} {:?}", p.kiosks);
    assert!(!shown.contains(&p.kiosks[0].secret));
    assert!(!shown.contains(&p.admin_token));
    assert!(!shown.contains(&p.residents[0].full_name));
}

#[test]
fn oversized_specs_are_rejected() {
    assert_eq!(spec(1, 10, 10).validate(), Ok(()));
    let too_many = spec(1, PopulationSpec::MAX_RESIDENTS + 1, 0).validate();
    assert!(matches!(too_many, Err(SpecError::TooManyResidents { .. })));
    let too_many = spec(1, 0, PopulationSpec::MAX_KIOSKS + 1).validate();
    assert!(matches!(too_many, Err(SpecError::TooManyKiosks { .. })));
}
