//! The registry's rules (I4): records read back as stored, a revocation or an address
//! change is one new record version seen by every later read from any handle, and
//! concurrent changes of one record never lose each other.

use std::sync::Arc;

use kofu_core::records::{ResidentRecord, Seal};

use super::Backend;
use super::fixtures::{ON, card, pick, population};
use crate::{Registry, RevokeOutcome};

pub async fn records_read_revoke_and_update<B: Backend>(b: B) {
    let records = population();
    let registry = b.registry(records.clone()).await;
    for r in records.iter().take(20) {
        let got = registry.record(&r.card_id).await.expect("record");
        assert_eq!(got.as_deref(), Some(r));
    }
    let unknown = card(0xEE);
    assert_eq!(registry.record(&unknown).await, Ok(None));
    assert_eq!(
        registry.revoke_seal(&unknown, ON).await,
        Ok(RevokeOutcome::UnknownCard)
    );
    assert_eq!(
        registry.update_address(&unknown, "x".into()).await,
        Ok(None)
    );

    let sealed = pick(&records, |s| matches!(s, Seal::Registered { .. }));
    let got = registry.revoke_seal(&sealed.card_id, ON).await;
    assert_eq!(got, Ok(RevokeOutcome::Revoked { record_version: 2 }));
    let got = registry.revoke_seal(&sealed.card_id, ON).await;
    assert_eq!(got, Ok(RevokeOutcome::AlreadyRevoked { record_version: 2 }));
    // Seen through another handle right away.
    let other = b.registry_again().await;
    let seen = other.record(&sealed.card_id).await.expect("record");
    let seen = seen.expect("known card");
    assert!(matches!(seen.seal, Seal::Revoked { revoked_on, .. } if revoked_on == ON));
    assert_eq!(seen.version, 2);

    let unsealed = pick(&records, |s| matches!(s, Seal::NotRegistered));
    let got = registry.revoke_seal(&unsealed.card_id, ON).await;
    assert_eq!(got, Ok(RevokeOutcome::NotRegistered));
    let moved = registry
        .update_address(&unsealed.card_id, "新住所 1-2-3".into())
        .await;
    assert_eq!(moved, Ok(Some(2)));
    let moved = other
        .update_address(&unsealed.card_id, "新住所 4-5-6".into())
        .await;
    assert_eq!(moved, Ok(Some(3)));
    let seen = registry.record(&unsealed.card_id).await.expect("record");
    let seen = seen.expect("known card");
    assert_eq!((seen.version, seen.address.as_str()), (3, "新住所 4-5-6"));
    // Everything else of the record is as it was.
    let before = records
        .iter()
        .find(|r| r.card_id == unsealed.card_id)
        .expect("in the population");
    assert_eq!(seen.full_name, before.full_name);
    assert_eq!(seen.seal, before.seal);
}

/// Two handles on a registry loaded with the population, and a resident whose seal is
/// registered: the record a test changes through one handle and reads through the other.
async fn two_handles_and_a_seal<B: Backend>(
    b: &B,
) -> (Arc<dyn Registry>, Arc<dyn Registry>, ResidentRecord) {
    let records = population();
    let registry = b.registry(records.clone()).await;
    let other = b.registry_again().await;
    let sealed = pick(&records, |s| matches!(s, Seal::Registered { .. }));
    (registry, other, sealed)
}

pub async fn concurrent_updates_lose_nothing<B: Backend>(b: B) {
    let (registry, other, sealed) = two_handles_and_a_seal(&b).await;
    let card = sealed.card_id.clone();
    // Two revocations race each other and two streams of address changes, from two
    // handles, on the one record.
    let mut tasks = Vec::new();
    for registry in [&registry, &other] {
        let (registry, card) = (registry.clone(), card.clone());
        tasks.push(tokio::spawn(async move {
            registry.revoke_seal(&card, ON).await.map(Some)
        }));
    }
    for (n, registry) in [&registry, &other].into_iter().enumerate() {
        let (registry, card) = (registry.clone(), card.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let address = format!("addr {n}-{i}");
                registry.update_address(&card, address).await?;
            }
            Ok(None)
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        if let Some(o) = t.await.expect("task").expect("update") {
            outcomes.push(o);
        }
    }
    let revoked = outcomes
        .iter()
        .filter(|o| matches!(o, RevokeOutcome::Revoked { .. }))
        .count();
    let already = outcomes
        .iter()
        .filter(|o| matches!(o, RevokeOutcome::AlreadyRevoked { .. }))
        .count();
    assert_eq!((revoked, already), (1, 1), "{outcomes:?}");
    let last = registry.record(&card).await.expect("record");
    let last = last.expect("known card");
    assert!(matches!(last.seal, Seal::Revoked { .. }));
    assert_eq!(last.version, 1 + 1 + 20, "an update was lost");
}

/// A delivered document re-renders from the record it was made from, on any node, even
/// after the record changed (I3, I4): superseded versions stay readable, looked up by
/// the card's digest alone (sessions keep no card id, I6).
pub async fn superseded_versions_stay_readable<B: Backend>(b: B) {
    let (registry, other, first) = two_handles_and_a_seal(&b).await;
    let digest = first.card_id.digest_bytes();
    let got = registry.record_by_digest(digest).await.expect("record");
    assert_eq!(got.as_deref(), Some(&first));
    assert_eq!(
        registry.record_by_digest(card(0xEE).digest_bytes()).await,
        Ok(None)
    );
    let revoked = registry.revoke_seal(&first.card_id, ON).await;
    assert_eq!(revoked, Ok(RevokeOutcome::Revoked { record_version: 2 }));
    let second = registry.record(&first.card_id).await.expect("record");
    let second = second.expect("known card");
    let moved = other
        .update_address(&first.card_id, "転居先 7-8-9".into())
        .await;
    assert_eq!(moved, Ok(Some(3)));
    let third = other.record_by_digest(digest).await.expect("record");
    let third = third.expect("known card");
    assert_eq!(third.version, 3);
    for handle in [&registry, &other] {
        let at = |v| handle.record_at(digest, v);
        assert_eq!(at(1).await.expect("v1").as_deref(), Some(&first));
        assert_eq!(at(2).await.expect("v2").as_deref(), Some(&*second));
        assert_eq!(at(3).await.expect("v3").as_deref(), Some(&*third));
        assert_eq!(at(4).await, Ok(None), "a version never written");
        assert_eq!(at(0).await, Ok(None));
    }
    assert_eq!(
        registry.record_at(card(0xEE).digest_bytes(), 1).await,
        Ok(None)
    );
}
