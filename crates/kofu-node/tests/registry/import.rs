//! `kofu registry import` against a private `redis-server`: a file with a bad line is
//! refused whole (line and field named, no value, nothing written), a good file lands
//! at version 1 and labels the registry, a re-import writes only what changed, and a
//! fixture population is not imported over. The rules themselves are tested in
//! kofu-core (`registry_file`) and kofu-coord (`tests/redis/import.rs`).

use std::path::Path;
use std::process::Output;

use super::{registry, text};

use kofu_coord::Registry as _;
use kofu_coord::redis::{RedisRegistry, connect};
use kofu_core::registry_file::to_line;
use kofu_core::{Population, PopulationSpec};
use kofu_testkit::RedisServer;

const SHARDS: u32 = 64;

fn import(url: &str, file: &Path) -> Output {
    let file = file.display().to_string();
    let shards = SHARDS.to_string();
    registry(&["import", "--redis", url, &file, "--shard-count", &shards])
}

fn population(residents: u32) -> Population {
    Population::generate(&PopulationSpec {
        seed: 21,
        residents,
        kiosks: 1,
    })
}

#[tokio::test]
async fn a_bad_file_is_refused_whole_and_a_good_one_imported_then_updated() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("registry.jsonl");
    let pop = population(3_000);
    let mut lines: Vec<String> = pop.residents.iter().map(to_line).collect();
    let registry = RedisRegistry::new(connect(&url).await.expect("connect"), SHARDS);

    // Line 2500 names its resident where the sex belongs.
    let good = lines[2_499].clone();
    let name = &pop.residents[2_499].full_name;
    lines[2_499] = good.replacen("\"sex\":\"", &format!("\"sex\":\"{name}"), 1);
    std::fs::write(&file, lines.join("\n")).expect("write");
    let out = import(&url, &file);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("line 2500, field sex"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(name.as_str()), "{}", text(&out));
    assert_eq!(registry.loaded_population().await.expect("readable"), None);
    let first = &pop.residents[0].card_id;
    assert!(
        registry.record(first).await.expect("readable").is_none(),
        "nothing loaded"
    );

    lines[2_499] = good;
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    let out = import(&url, &file);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("imported 3000 records") && text(&out).contains("3000 added"),
        "{}",
        text(&out)
    );
    let label = registry
        .loaded_population()
        .await
        .expect("readable")
        .expect("labelled");
    assert!(label.starts_with("import:"), "{label}");
    for r in pop.residents.iter().step_by(97) {
        let got = registry.record(&r.card_id).await.expect("readable");
        assert_eq!(got.as_deref(), Some(r));
    }

    // A second file: one address changed, one new resident; only those are written.
    let newcomer = Population::generate(&PopulationSpec {
        seed: 99,
        residents: 1,
        kiosks: 1,
    })
    .residents;
    let mut next = pop.residents.clone();
    next.extend(newcomer);
    next[10].address = "〒900-0001 沖縄県那覇市港町一丁目1番1号".into();
    let text_of: String = next.iter().map(|r| to_line(r) + "\n").collect();
    std::fs::write(&file, text_of).expect("write");
    let out = import(&url, &file);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 added, 1 changed, 2999 unchanged"),
        "{}",
        text(&out)
    );
    let moved = registry
        .record(&next[10].card_id)
        .await
        .expect("readable")
        .expect("known");
    assert_eq!((moved.version, &moved.address), (2, &next[10].address));
    let relabelled = registry.loaded_population().await.expect("readable");
    assert_ne!(
        relabelled.as_deref(),
        Some(label.as_str()),
        "the label names the file"
    );
}

#[tokio::test]
async fn a_fixture_population_is_not_imported_over() {
    let server = RedisServer::start();
    let url = server.url();
    let shards = SHARDS.to_string();
    let out = registry(&[
        "load",
        "--redis",
        &url,
        "--fixture-seed",
        "21",
        "--fixture-residents",
        "50",
        "--shard-count",
        &shards,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("registry.jsonl");
    let lines: String = population(50)
        .residents
        .iter()
        .map(|r| to_line(r) + "\n")
        .collect();
    std::fs::write(&file, lines).expect("write");
    let out = import(&url, &file);
    assert!(!out.status.success());
    assert!(text(&out).contains("fixture population"), "{}", text(&out));
}
