//! What is Redis's own in the registry: the shard count it was loaded with, undecodable
//! records, the key layout (hash tags, no card ids in keys, I6) and failing closed while
//! Redis is away (I7). The registry's rules common to every implementation (reads,
//! revocations, updates, concurrent changes) are in the conformance suite.

use super::*;

#[tokio::test]
async fn registry_refuses_another_shard_count() {
    let env = env().await;
    let records = population();
    let registry = RedisRegistry::new(env.raw.clone(), SHARDS);
    registry
        .load(records.iter().take(5).cloned())
        .await
        .expect("load");
    registry.check_shard_count().await.expect("same count");
    let other = RedisRegistry::new(env.raw.clone(), SHARDS * 2);
    let res = other.load(records.iter().take(5).cloned()).await;
    assert!(matches!(
        res,
        Err(RegistrySetupError::ShardCountMismatch {
            stored: 16,
            configured: 32
        })
    ));
}

#[tokio::test]
async fn undecodable_record_is_corrupt() {
    let env = env().await;
    let registry = RedisRegistry::new(env.raw.clone(), SHARDS);
    let c = card(0x42);
    let key = format!(
        "kofu:{{s{}}}:rec:{}",
        kofu_proto::shard_of(&c, SHARDS),
        c.digest()
    );
    let _: () = raw(&env.raw, redis::cmd("SET").arg(&key).arg("garbage")).await;
    assert!(matches!(
        registry.record(&c).await,
        Err(StoreError::Corrupt(_))
    ));
}

/// Drives a workload over several shards and the registry, then inspects every key.
#[tokio::test]
async fn keys_share_the_shard_tag_and_never_hold_a_card_id() {
    let env = env().await;
    let records = population();
    let registry = RedisRegistry::new(env.raw.clone(), SHARDS);
    registry.load(records.clone()).await.expect("load");
    let sealed = pick(&records, |s| matches!(s, Seal::Registered { .. }));
    registry
        .revoke_seal(&sealed.card_id, ON)
        .await
        .expect("revoke");
    for (n, r) in records.iter().take(8).enumerate() {
        let shard = kofu_proto::shard_of(&r.card_id, SHARDS);
        let fence = match env.leases.acquire(shard, "a", LONG).await.expect("acquire") {
            Some(f) => f,
            None => {
                let (_, epoch) = env
                    .leases
                    .holder(shard)
                    .await
                    .expect("holder")
                    .expect("held");
                Fence { shard, epoch }
            }
        };
        let s = session(shard, n as u8);
        env.store
            .apply(fence, s, full_change(&s, &r.card_id))
            .await
            .expect("apply");
    }
    let keys: Vec<String> = raw(&env.raw, redis::cmd("KEYS").arg("*")).await;
    assert!(keys.len() > records.len());
    for key in &keys {
        assert!(key.starts_with("kofu:"), "{key}");
        if key == "kofu:meta:shard_count" {
            continue;
        }
        let tag = key
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(tag, _)| tag)
            .unwrap_or_else(|| panic!("key without hash tag: {key}"));
        let shard: u32 = tag
            .strip_prefix('s')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("malformed hash tag: {key}"));
        assert!(shard < SHARDS, "{key}");
        assert!(key.starts_with(&format!("kofu:{{s{shard}}}:")), "{key}");
        if let Some(rest) = key.split(":rec:").nth(1) {
            // A superseded version is kept as `rec:<digest>@<version>`.
            let digest = rest.split('@').next().unwrap_or(rest);
            let r = records.iter().find(|r| r.card_id.digest() == digest);
            let r = r.unwrap_or_else(|| panic!("record key of no card: {key}"));
            assert_eq!(kofu_proto::shard_of(&r.card_id, SHARDS), shard);
        }
    }
    let streams: Vec<&String> = keys.iter().filter(|k| k.ends_with(":audit")).collect();
    assert!(!streams.is_empty());
    let mut stream_text = String::new();
    for s in streams {
        let v: redis::Value = raw(&env.raw, redis::cmd("XRANGE").arg(s).arg("-").arg("+")).await;
        stream_text.push_str(&format!("{v:?}"));
    }
    for r in &records {
        let id = r.card_id.expose();
        for key in &keys {
            assert!(!key.contains(id), "a key holds a raw card id");
        }
        assert!(
            !stream_text.contains(id),
            "the audit stream holds a raw card id"
        );
    }
}

#[tokio::test]
async fn unreachable_redis_is_unavailable_and_recovers() {
    let mut env = env().await;
    let fence = env.lease(1, LONG).await;
    let registry = RedisRegistry::new(env.raw.clone(), SHARDS);
    env._server.stop();
    let s = session(1, 1);
    let res = env.store.apply(fence, s, Change::snapshot(vec![1])).await;
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    assert!(matches!(
        registry.record(&card(1)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        env.leases.acquire(1, "a", LONG).await,
        Err(StoreError::Unavailable(_))
    ));
    // The restarted server is empty: the old fence is gone with it, a new lease works.
    env._server.start_again();
    // Reconnecting takes a moment; a busy machine's moment is long.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let fence = loop {
        match env.leases.acquire(1, "a", LONG).await {
            Ok(Some(f)) => break f,
            Ok(None) => panic!("empty server has a lease"),
            Err(e) if tokio::time::Instant::now() > deadline => panic!("no reconnect: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    // The restarted server lost the epoch counter; the floor still keeps epochs real.
    assert!(fence.epoch > 1_700_000_000_000, "{fence:?}");
    let res = env.store.apply(fence, s, Change::snapshot(vec![1])).await;
    assert_eq!(res, Ok(Applied::default()));
}

/// What is stored may be personal data: an error about it names the kind of damage,
/// never the bytes (I6).
#[tokio::test]
async fn errors_about_stored_data_never_quote_it() {
    let env = env().await;
    let registry = RedisRegistry::new(env.raw.clone(), SHARDS);
    let records = population();
    let (victim, other) = (&records[0], &records[1]);
    let key = |c: &CardId| {
        format!(
            "kofu:{{s{}}}:rec:{}",
            kofu_proto::shard_of(c, SHARDS),
            c.digest()
        )
    };
    let secret = format!("{} {}", victim.card_id.expose(), victim.full_name);
    let mut checks = Vec::new();
    // Bytes that do not decode, and a valid record of another card under this key.
    let _: () = raw(
        &env.raw,
        redis::cmd("SET").arg(key(&victim.card_id)).arg(&secret),
    )
    .await;
    checks.push(registry.record(&victim.card_id).await.map(drop));
    let other_bytes = rmp_serde::to_vec_named(other).expect("encode");
    let _: () = raw(
        &env.raw,
        redis::cmd("SET").arg(key(&victim.card_id)).arg(other_bytes),
    )
    .await;
    checks.push(registry.record(&victim.card_id).await.map(drop));
    checks.push(registry.revoke_seal(&victim.card_id, ON).await.map(drop));
    // A session index entry that is no session id (with a snapshot under its name: the
    // listing prunes entries whose snapshot is gone without looking at them).
    let fence = env.lease(1, LONG).await;
    let _: () = raw(
        &env.raw,
        redis::cmd("ZADD")
            .arg("kofu:{s1}:sessions")
            .arg(i64::MAX)
            .arg(&secret),
    )
    .await;
    let snap_key = format!("kofu:{{s1}}:snap:{secret}");
    let _: () = raw(&env.raw, redis::cmd("SET").arg(snap_key).arg(&secret)).await;
    let listed = env
        .store
        .list_sessions(fence, kofu_coord::SessionCursor::default(), 10)
        .await;
    checks.push(listed.map(drop));
    for res in checks {
        let err = res.expect_err("damaged data is an error");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        let text = format!("{err} {err:?}");
        for quoted in [
            victim.card_id.expose(),
            victim.full_name.as_str(),
            other.card_id.expose(),
            other.full_name.as_str(),
        ] {
            assert!(!text.contains(quoted), "error quotes stored data: {text}");
        }
    }
}
