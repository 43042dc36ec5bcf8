//! `kofu registry load` against a private `redis-server`: the population lands once,
//! a repeated load leaves changed records alone, and a different population is refused.

use std::process::Output;

use super::{registry, text};

use kofu_coord::Registry as _;
use kofu_coord::RevokeOutcome;
use kofu_coord::redis::{RedisRegistry, connect};
use kofu_core::records::{Date, Seal};
use kofu_core::{Population, PopulationSpec};
use kofu_testkit::RedisServer;

fn load(url: &str, seed: u64, residents: u32, shards: u32) -> Output {
    let (seed, residents, shards) = (seed.to_string(), residents.to_string(), shards.to_string());
    registry(&[
        "load",
        "--redis",
        url,
        "--fixture-seed",
        &seed,
        "--fixture-residents",
        &residents,
        "--shard-count",
        &shards,
    ])
}

#[tokio::test]
async fn loads_once_and_never_overwrites_changed_records() {
    let server = RedisServer::start();
    let url = server.url();
    let first = load(&url, 5, 300, 64);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("loaded 300 resident records"),
        "{}",
        text(&first)
    );

    let population = Population::generate(&PopulationSpec {
        seed: 5,
        residents: 300,
        kiosks: 1,
    });
    let registry = RedisRegistry::new(connect(&url).await.expect("connect"), 64);
    for want in population.residents.iter().step_by(37) {
        let got = registry
            .record(&want.card_id)
            .await
            .expect("readable")
            .expect("loaded");
        assert_eq!(*got, *want);
    }

    // A revocation made through the registry must survive a repeated load.
    let sealed = population
        .residents
        .iter()
        .find(|r| matches!(r.seal, Seal::Registered { .. }))
        .expect("someone has a registered seal");
    let on = Date::ymd(2026, 11, 22);
    assert!(matches!(
        registry.revoke_seal(&sealed.card_id, on).await,
        Ok(RevokeOutcome::Revoked { .. })
    ));
    let again = load(&url, 5, 300, 64);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("already holds"), "{}", text(&again));
    let after = registry
        .record(&sealed.card_id)
        .await
        .expect("readable")
        .expect("present");
    assert!(
        matches!(after.seal, Seal::Revoked { .. }),
        "the repeated load undid a revocation"
    );

    let other = load(&url, 6, 300, 64);
    assert!(
        !other.status.success(),
        "another population must be refused"
    );
    let wrong_shards = RedisServer::start();
    let ok = load(&wrong_shards.url(), 5, 50, 64);
    assert!(ok.status.success(), "{}", text(&ok));
    let bad = load(&wrong_shards.url(), 7, 50, 128);
    assert!(
        !bad.status.success(),
        "a different shard count must be refused"
    );

    let all = text(&first) + &text(&again) + &text(&other) + &text(&bad);
    for r in &population.residents {
        assert!(!all.contains(r.card_id.expose()), "output names a card id");
        assert!(!all.contains(&r.full_name), "output names a resident");
    }
    assert!(!all.contains(&url), "output echoes the redis url");
}

#[test]
fn bad_arguments_exit_2() {
    let out = load("redis://127.0.0.1:1", 1, 0, 64);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = load("redis://127.0.0.1:1", 1, 10, 0);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
