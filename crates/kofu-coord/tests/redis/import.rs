//! Importing registry files into Redis: a first import adds every record at version 1,
//! a second applies only what changed (each a new version, the old one still readable),
//! a revocation made meanwhile survives a stale file, and a registry holding a fixture
//! population is not imported over.

use kofu_coord::ImportStats;
use kofu_core::records::ResidentRecord;

use super::*;

fn registry(env: &Env) -> RedisRegistry {
    RedisRegistry::new(env.raw.clone(), SHARDS)
}

async fn import(registry: &RedisRegistry, records: &[ResidentRecord]) -> ImportStats {
    let mut stats = ImportStats::default();
    // Batches as the importer sends them; small here so that several are needed.
    for batch in records.chunks(64) {
        stats.add(registry.import_batch(batch).await.expect("import"));
    }
    stats
}

async fn current(registry: &RedisRegistry, r: &ResidentRecord) -> ResidentRecord {
    let got = registry.record(&r.card_id).await.expect("readable");
    (*got.expect("imported")).clone()
}

#[tokio::test]
async fn a_reimport_applies_only_changes_as_new_versions() {
    let env = env().await;
    let registry = registry(&env);
    assert_eq!(registry.check_importable().await.expect("importable"), None);
    let records = population();
    let first = import(&registry, &records).await;
    assert_eq!(
        first,
        ImportStats {
            added: records.len() as u64,
            ..ImportStats::default()
        }
    );
    for r in records.iter().step_by(29) {
        assert_eq!(current(&registry, r).await, *r);
    }

    let mut next = records.clone();
    next[3].address = "〒060-0001 北海道札幌市中央区北一条西二丁目1番地".into();
    next[7].restricted = !next[7].restricted;
    let second = import(&registry, &next).await;
    assert_eq!(
        second,
        ImportStats {
            changed: 2,
            unchanged: records.len() as u64 - 2,
            ..ImportStats::default()
        }
    );
    let moved = current(&registry, &next[3]).await;
    assert_eq!(
        (moved.version, moved.address.as_str()),
        (2, next[3].address.as_str())
    );
    // The version a delivered document names stays readable.
    let before = registry
        .record_at(records[3].card_id.digest_bytes(), 1)
        .await
        .expect("readable")
        .expect("kept for the history ttl");
    assert_eq!(*before, records[3]);

    registry.mark_imported("import:two").await.expect("label");
    assert_eq!(
        registry.check_importable().await.expect("importable"),
        Some("import:two".to_owned())
    );
}

#[tokio::test]
async fn a_stale_file_never_undoes_a_revocation() {
    let env = env().await;
    let registry = registry(&env);
    let records = population();
    import(&registry, &records).await;
    let sealed = pick(&records, |s| matches!(s, Seal::Registered { .. }));
    assert!(matches!(
        registry.revoke_seal(&sealed.card_id, ON).await,
        Ok(RevokeOutcome::Revoked { record_version: 2 })
    ));
    // The same file again, and then one that also moves the resident.
    let again = import(&registry, &records).await;
    assert_eq!(again.changed, 0, "{again}");
    let mut moved = records.clone();
    let i = records
        .iter()
        .position(|r| r.card_id == sealed.card_id)
        .expect("listed");
    moved[i].address = "〒530-0001 大阪府大阪市北区梅田一丁目1番3号".into();
    assert_eq!(import(&registry, &moved).await.changed, 1);
    let now = current(&registry, &sealed).await;
    assert!(matches!(now.seal, Seal::Revoked { .. }), "{:?}", now.seal);
    assert_eq!(
        (now.version, now.address.as_str()),
        (3, moved[i].address.as_str())
    );
}

#[tokio::test]
async fn a_fixture_population_is_not_imported_over() {
    let env = env().await;
    let registry = registry(&env);
    let records = population();
    registry
        .load(records.iter().take(5).cloned())
        .await
        .expect("load");
    registry
        .mark_population("seed=11/residents=300")
        .await
        .expect("mark");
    assert!(matches!(
        registry.check_importable().await,
        Err(RegistrySetupError::FixturePopulation { .. })
    ));
    let other = RedisRegistry::new(env.raw.clone(), SHARDS * 2);
    assert!(matches!(
        other.check_importable().await,
        Err(RegistrySetupError::ShardCountMismatch { .. })
    ));
}
