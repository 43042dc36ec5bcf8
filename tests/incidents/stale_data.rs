//! Incident 5 (stale data): once a seal revocation is acknowledged, no seal certificate
//! of that holder is released, whatever state its job was in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kofu_kiosk::{CallError, Fetched};
use kofu_proto::{CertKind, ErrorCode};
use kofu_testkit::Card;
use tokio::task::JoinSet;

use crate::env::Env;
use crate::noise::Noise;
use crate::steps::{brief, close, fetch, is_raw_error, new_job, not_released, open, print};
use crate::{Summary, Tally};

/// Seal jobs are created, then the holders' seal registrations are revoked (admin API
/// acknowledged) — some jobs already rendered but not fetched, some still rendering.
/// Every one of them answers `422 not_issuable` (reason `seal_revoked`) from then on,
/// a new seal job is refused at creation, while other holders' seal certificates
/// (fetched concurrently) and the revoked holders' residence certificates still release.
pub(crate) async fn stale_data_revocation(apis: &[String], env: &Arc<Env>) -> Summary {
    const GROUP: usize = 4;
    let mut pick = env.picker();
    let sealed = |c: &Card| c.seal_registered && !c.seal_revoked;
    let rendered = pick.take(GROUP, sealed);
    let rendering = pick.take(GROUP, sealed);
    let untouched = pick.take(GROUP, sealed);
    assert_eq!(
        rendered.len() + rendering.len() + untouched.len(),
        3 * GROUP,
        "enough holders with a seal registration"
    );
    let mut tally = Tally::default();
    let noise = Noise::start(apis, env);

    // Kiosk i serves holder i of the concatenated list.
    let holders: Vec<(usize, usize)> = rendered
        .iter()
        .chain(&rendering)
        .chain(&untouched)
        .copied()
        .enumerate()
        .collect();
    let mut sessions = HashMap::new();
    for &(i, card_ix) in &holders {
        match open(&env.kiosk(apis, i), env.card(card_ix)).await {
            Ok((sid, kinds)) if kinds.contains(&CertKind::Seal) => {
                sessions.insert(i, sid);
            }
            Ok(_) => tally.fail(format!("holder {i}: a registered seal was not offered")),
            Err(e) => tally.fail(format!("holder {i}: {e}")),
        }
    }
    let job = |i: usize, kind: CertKind| {
        let (kiosk, sid) = (
            env.kiosk(apis, i),
            sessions.get(&i).cloned().unwrap_or_default(),
        );
        async move { new_job(&kiosk, &sid, kind, 1).await }
    };
    // Group one: seal and residence jobs whose renders finish (1 s) before the revocation.
    let mut seal_jobs = HashMap::new();
    let mut residence_jobs = HashMap::new();
    for &(i, _) in &holders[..GROUP] {
        match (
            job(i, CertKind::Seal).await,
            job(i, CertKind::Residence).await,
        ) {
            (Ok(s), Ok(r)) => {
                seal_jobs.insert(i, s);
                residence_jobs.insert(i, r);
            }
            (s, r) => tally.fail(format!("holder {i}: {:?} {:?}", s.err(), r.err())),
        }
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Groups two and three: seal jobs that are still rendering when the revocation lands.
    for &(i, _) in &holders[GROUP..] {
        match job(i, CertKind::Seal).await {
            Ok(s) => {
                seal_jobs.insert(i, s);
            }
            Err(e) => tally.fail(format!("holder {i}: {e}")),
        }
    }

    // Revoke groups one and two while group three's documents are fetched.
    let revoked: Vec<(usize, usize)> = holders[..2 * GROUP].to_vec();
    let revocations = {
        let env = env.clone();
        let revoked = revoked.clone();
        async move {
            let mut t = Tally::default();
            let mut acked = HashMap::new();
            let mut set = JoinSet::new();
            for (i, card_ix) in revoked {
                let env = env.clone();
                set.spawn(async move {
                    let path = format!(
                        "/admin/v1/residents/{}/seal/revoke",
                        env.card(card_ix).card_id()
                    );
                    (
                        i,
                        env.admin(i, reqwest::Method::POST, &path, None).await,
                        Instant::now(),
                    )
                });
            }
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok((i, r, at)) if r.status == 200 && r.value()["seal"] == "revoked" => {
                        acked.insert(i, at);
                    }
                    Ok((i, r, _)) => t.fail(format!("holder {i}: {}", brief("seal revoke", &r))),
                    Err(e) => t.fail(format!("revoke task died: {e}")),
                }
            }
            (t, acked)
        }
    };
    let unaffected = {
        let mut set = JoinSet::new();
        for &(i, card_ix) in &holders[2 * GROUP..] {
            let (env, kiosk) = (env.clone(), env.kiosk(apis, i));
            let sid = sessions.get(&i).cloned().unwrap_or_default();
            let Some(job) = seal_jobs.get(&i).cloned() else {
                continue;
            };
            set.spawn(async move {
                let mut t = Tally::default();
                let r = fetch(&kiosk, &sid, &job.id).await;
                match env
                    .check(card_ix, &r, &sid, kiosk.kiosk_id(), job.kind, job.copies)
                    .await
                {
                    Ok(c) => {
                        t.add("seal_released_untouched", 1);
                        t.serials.push(c.binding.serial.clone());
                        if let Err(e) = print(&kiosk, &sid, &job, &c.binding.serial).await {
                            t.fail(format!("holder {i}: {e}"));
                        }
                    }
                    Err(e) => t.fail(format!("untouched holder {i}: {e}")),
                }
                t
            });
        }
        let mut t = Tally::default();
        async move {
            t.join(set).await;
            t
        }
    };
    let ((t, acked), t2) = tokio::join!(revocations, unaffected);
    tally.merge(t);
    tally.merge(t2);

    for &(i, card_ix) in &revoked {
        let kiosk = env.kiosk(apis, i);
        let Some(sid) = sessions.get(&i) else {
            continue;
        };
        let Some(job) = seal_jobs.get(&i) else {
            continue;
        };
        if !acked.contains_key(&i) {
            continue;
        }
        // Acknowledged before this job's render could finish: it was still rendering.
        if acked[&i] < job.created + Duration::from_millis(1000) {
            tally.add("revoked_while_rendering", 1);
        } else {
            tally.add("revoked_after_render", 1);
        }
        for attempt in 0..2 {
            match fetch(&kiosk, sid, &job.id).await {
                Ok(Fetched::Ready(_)) => tally.fail(format!(
                    "holder {i}: STALE: a seal certificate was released after its revocation \
                     was acknowledged (fetch {attempt})"
                )),
                r if seal_revoked(&r) => tally.add("seal_refused", 1),
                r => tally.fail(format!(
                    "holder {i}: {}",
                    not_released("seal document after revocation", &r)
                )),
            }
        }
        let p = kiosk.raw().printed(sid, &job.id).await;
        if p.status < 400 {
            tally.fail(format!(
                "holder {i}: {}",
                brief("printed on a refused job", &p)
            ));
        }
        // A new seal job after the revocation is refused at creation.
        let r = kiosk.raw().create_job(sid, "seal", 1).await;
        if is_raw_error(&r, 422, "not_issuable") && r.value()["reason"] == "seal_revoked" {
            tally.add("seal_job_refused", 1);
        } else {
            tally.fail(format!(
                "holder {i}: {}",
                brief("new seal job after revocation", &r)
            ));
        }
        // The revocation touches the seal only: a residence certificate still releases.
        if let Some(res) = residence_jobs.get(&i) {
            let r = fetch(&kiosk, sid, &res.id).await;
            match env
                .check(card_ix, &r, sid, kiosk.kiosk_id(), res.kind, res.copies)
                .await
            {
                Ok(c) => {
                    tally.add("residence_released_revoked", 1);
                    tally.serials.push(c.binding.serial);
                }
                Err(e) => tally.fail(format!("holder {i}: residence after seal revocation: {e}")),
            }
        }
        if let Err(e) = close(&kiosk, sid).await {
            tally.fail(format!("holder {i}: {e}"));
        }
        // A fresh session no longer offers the seal and refuses it at creation. Revoking
        // again is acknowledged as well (idempotent).
        match open(&kiosk, env.card(card_ix)).await {
            Ok((sid, kinds)) => {
                if kinds.contains(&CertKind::Seal) {
                    tally.fail(format!("holder {i}: a revoked seal is still offered"));
                }
                let r = kiosk.raw().create_job(&sid, "seal", 1).await;
                if !is_raw_error(&r, 422, "not_issuable") || r.value()["reason"] != "seal_revoked" {
                    tally.fail(format!(
                        "holder {i}: {}",
                        brief("seal job in a new session", &r)
                    ));
                }
                if let Err(e) = close(&kiosk, &sid).await {
                    tally.fail(format!("holder {i}: {e}"));
                }
            }
            Err(e) => tally.fail(format!("holder {i}: reopening: {e}")),
        }
        let path = format!(
            "/admin/v1/residents/{}/seal/revoke",
            env.card(card_ix).card_id()
        );
        let again = env.admin(i, reqwest::Method::POST, &path, None).await;
        if again.status != 200 {
            tally.fail(format!("holder {i}: {}", brief("repeated revoke", &again)));
        }
    }
    for &(i, _) in &holders[2 * GROUP..] {
        if let Some(sid) = sessions.get(&i)
            && let Err(e) = close(&env.kiosk(apis, i), sid).await
        {
            tally.fail(format!("holder {i}: {e}"));
        }
    }
    tally.merge(noise.stop().await);
    tally.finish(
        "incident 5",
        &[
            "seal_refused",
            "seal_job_refused",
            "seal_released_untouched",
            "residence_released_revoked",
        ],
    )
}

/// `422 not_issuable` for the reason `seal_revoked`.
fn seal_revoked<T>(r: &Result<T, CallError>) -> bool {
    r.as_ref().err().is_some_and(|e| {
        e.is(ErrorCode::NotIssuable) && e.api().and_then(|a| a.reason()) == Some("seal_revoked")
    })
}
