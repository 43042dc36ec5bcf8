//! Incident 3 (record update during issuance): every document reflects exactly one
//! record version of its own holder while addresses change under it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kofu_proto::CertKind;
use kofu_testkit::normalize_spaces;
use serde_json::json;
use tokio::task::JoinSet;

use crate::env::Env;
use crate::noise::Noise;
use crate::steps::{brief, close, fetch, new_job, open};
use crate::{Summary, Tally};

/// Address changes land again and again for the same holders while their residence
/// certificates render (200 ms each). Each document reflects exactly one record
/// version of its own holder: the binding's `record_version` is one the admin API
/// acknowledged (or the original one), the text holds that version's address and no
/// other address we set, and only names of the holder's household.
pub(crate) async fn record_update_during_issuance(apis: &[String], env: &Arc<Env>) -> Summary {
    const HOLDERS: usize = 6;
    const ROUNDS: usize = 15;
    const SESSIONS_PER_HOLDER: usize = 2;
    const JOBS_PER_SESSION: usize = 4;
    let mut pick = env.picker();
    // Distinct households: one holder's update cannot show up on another's paper.
    let mut households = HashSet::new();
    let holders = pick.take(usize::MAX, |c| households.insert(c.household_id.clone()));
    let holders: Vec<usize> = holders.into_iter().take(HOLDERS).collect();
    assert_eq!(
        holders.len(),
        HOLDERS,
        "enough holders in distinct households"
    );
    let mut tally = Tally::default();
    let noise = Noise::start(apis, env);

    // The updater: every 40 ms a new address for every holder; the admin answer tells
    // which record version each address produced.
    let updater = {
        let (env, holders) = (env.clone(), holders.clone());
        tokio::spawn(async move {
            let mut t = Tally::default();
            let mut versions: HashMap<(usize, u64), String> = HashMap::new();
            for round in 0..ROUNDS {
                let mut set = JoinSet::new();
                for (h, &card_ix) in holders.iter().enumerate() {
                    let env = env.clone();
                    let address = format!("Kofutest {h:02}-{round:03} Chome");
                    set.spawn(async move {
                        let path = format!(
                            "/admin/v1/residents/{}/address",
                            env.card(card_ix).card_id()
                        );
                        let r = env
                            .admin(
                                round + h,
                                reqwest::Method::POST,
                                &path,
                                Some(json!({ "address": address })),
                            )
                            .await;
                        (h, address, r)
                    });
                }
                while let Some(joined) = set.join_next().await {
                    let Ok((h, address, r)) = joined else {
                        t.fail("address update task died");
                        continue;
                    };
                    match r.value()["record_version"].as_u64() {
                        Some(v) if r.status == 200 => {
                            t.add("address_updates", 1);
                            if versions.insert((h, v), address).is_some() {
                                t.fail(format!("two address updates acknowledged as version {v}"));
                            }
                        }
                        _ => t.fail(brief("address update", &r)),
                    }
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            (t, versions)
        })
    };

    // The issuers: per holder, sessions of four residence jobs created 50 ms apart,
    // so every render overlaps several updates.
    let mut tasks = JoinSet::new();
    for (h, &card_ix) in holders.iter().enumerate() {
        let (env, kiosk) = (env.clone(), env.kiosk(apis, h));
        tasks.spawn(async move {
            let mut t = Tally::default();
            let mut docs = Vec::new();
            for s in 0..SESSIONS_PER_HOLDER {
                let sid = match open(&kiosk, env.card(card_ix)).await {
                    Ok((sid, _)) => sid,
                    Err(e) => {
                        t.fail(format!("holder {h} session {s}: {e}"));
                        continue;
                    }
                };
                let mut jobs = Vec::new();
                for _ in 0..JOBS_PER_SESSION {
                    match new_job(&kiosk, &sid, CertKind::Residence, 1).await {
                        Ok(j) => jobs.push(j),
                        Err(e) => t.fail(format!("holder {h}: {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                for job in &jobs {
                    let r = fetch(&kiosk, &sid, &job.id).await;
                    match env
                        .check(card_ix, &r, &sid, kiosk.kiosk_id(), job.kind, job.copies)
                        .await
                    {
                        Ok(c) => {
                            t.serials.push(c.binding.serial.clone());
                            docs.push((h, c));
                        }
                        Err(e) => t.fail(format!("holder {h}: {e}")),
                    }
                }
                if let Err(e) = close(&kiosk, &sid).await {
                    t.fail(format!("holder {h}: {e}"));
                }
            }
            (t, docs)
        });
    }
    let mut docs = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((t, d)) => {
                tally.merge(t);
                docs.extend(d);
            }
            Err(e) => tally.fail(format!("issuer task died: {e}")),
        }
    }
    let versions = match updater.await {
        Ok((t, v)) => {
            tally.merge(t);
            v
        }
        Err(e) => {
            tally.fail(format!("updater died: {e}"));
            HashMap::new()
        }
    };
    tally.merge(noise.stop().await);

    let mut set_by_holder: HashMap<usize, Vec<(u64, &str)>> = HashMap::new();
    for ((h, v), a) in &versions {
        set_by_holder.entry(*h).or_default().push((*v, a.as_str()));
    }
    for (h, c) in &docs {
        tally.add("docs", 1);
        let text = normalize_spaces(&c.text);
        let v = c.binding.record_version;
        let serial = &c.binding.serial;
        let mine = set_by_holder.get(h).cloned().unwrap_or_default();
        let present: Vec<&str> = mine
            .iter()
            .filter(|(_, a)| text.contains(a))
            .map(|(_, a)| *a)
            .collect();
        if present.len() > 1 {
            tally.fail(format!(
                "holder {h} document {serial}: mixes {} record versions' addresses",
                present.len()
            ));
        }
        match versions.get(&(*h, v)) {
            Some(addr) => {
                tally.add("docs_with_updated_record", 1);
                if present != [addr.as_str()] {
                    tally.fail(format!(
                        "holder {h} document {serial}: binding says record version {v} but the \
                         text does not hold exactly that version's address"
                    ));
                }
            }
            None => {
                // Not a version we produced: it must be the original record, older than
                // every update we made, with none of our addresses.
                let first = mine.iter().map(|(v, _)| *v).min().unwrap_or(u64::MAX);
                if v >= first || !present.is_empty() {
                    tally.fail(format!(
                        "holder {h} document {serial}: record version {v} is neither the \
                         original nor one the admin API acknowledged"
                    ));
                }
                tally.add("docs_with_original_record", 1);
            }
        }
        for (other, addrs) in &set_by_holder {
            if other != h && addrs.iter().any(|(_, a)| text.contains(a)) {
                tally.fail(format!(
                    "holder {h} document {serial}: CROSS-DELIVERY: holds holder {other}'s address"
                ));
            }
        }
    }
    if tally.get("docs_with_updated_record") == 0 {
        tally.fail("no document rendered from an updated record: updates did not overlap issuance");
    }
    tally.finish("incident 3", &["docs", "address_updates"])
}
