//! Incident 4 (multi-page documents): every page of a family register carries its own
//! serial, page mark and household, so no page can come from another document.

use std::collections::HashSet;
use std::sync::Arc;

use kofu_kiosk::{NameFault, check_names};
use kofu_proto::CertKind;
use kofu_testkit::normalize_spaces;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::env::{Checked, Env};
use crate::noise::Noise;
use crate::steps::{close, fetch, new_job, open, print};
use crate::{Summary, Tally};

/// Family-register certificates of multi-person households, concurrently: every page
/// carries the binding's serial, "頁 i/n" with the right i and n, the holder's name,
/// and only names of that household; households of two or more give two or more pages.
pub(crate) async fn multi_page_documents(apis: &[String], env: &Arc<Env>) -> Summary {
    const FAMILIES: usize = 24;
    const SINGLES: usize = 4;
    let mut pick = env.picker();
    let fx = &env.fx;
    let mut households = HashSet::new();
    let families: Vec<usize> = pick
        .take(usize::MAX, |c| {
            fx.household_names(&c.household_id).len() >= 2
                && households.insert(c.household_id.clone())
        })
        .into_iter()
        .take(FAMILIES)
        .collect();
    assert!(
        families.len() >= 8,
        "the population has multi-person households"
    );
    let singles = pick.take(SINGLES, |c| fx.household_names(&c.household_id).len() == 1);
    let holders: Vec<usize> = families.iter().chain(&singles).copied().collect();
    let mut tally = Tally::default();
    let noise = Noise::start(apis, env);
    let barrier = Arc::new(Barrier::new(holders.len()));
    let mut tasks = JoinSet::new();
    for (i, card_ix) in holders.into_iter().enumerate() {
        let (env, barrier, kiosk) = (env.clone(), barrier.clone(), env.kiosk(apis, i));
        tasks.spawn(async move {
            let mut t = Tally::default();
            barrier.wait().await;
            let sid = match open(&kiosk, env.card(card_ix)).await {
                Ok((sid, _)) => sid,
                Err(e) => {
                    t.fail(format!("holder {i}: {e}"));
                    return t;
                }
            };
            // Two copies on some: the PDF is one copy either way, the binding says how many.
            let copies = (i % 2) as u8 + 1;
            match new_job(&kiosk, &sid, CertKind::FamilyRegister, copies).await {
                Ok(job) => {
                    let r = fetch(&kiosk, &sid, &job.id).await;
                    match env
                        .check(card_ix, &r, &sid, kiosk.kiosk_id(), job.kind, job.copies)
                        .await
                    {
                        Ok(c) => {
                            check_pages(&env, card_ix, &c, &mut t);
                            t.serials.push(c.binding.serial.clone());
                            if let Err(e) = print(&kiosk, &sid, &job, &c.binding.serial).await {
                                t.fail(format!("holder {i}: {e}"));
                            }
                        }
                        Err(e) => t.fail(format!("holder {i}: {e}")),
                    }
                }
                Err(e) => t.fail(format!("holder {i}: {e}")),
            }
            if let Err(e) = close(&kiosk, &sid).await {
                t.fail(format!("holder {i}: {e}"));
            }
            t
        });
    }
    tally.join(tasks).await;
    tally.merge(noise.stop().await);
    tally.finish("incident 4", &["docs", "pages", "multi_page_docs"])
}

fn check_pages(env: &Env, card_ix: usize, c: &Checked, t: &mut Tally) {
    let card = env.card(card_ix);
    let serial = &c.binding.serial;
    let members = env.fx.household_names(&card.household_id);
    // pdftotext ends every page with a form feed.
    let mut pages: Vec<&str> = c.text.split('\u{c}').collect();
    if pages.last().is_some_and(|p| p.trim().is_empty()) {
        pages.pop();
    }
    let n = pages.len() as u32;
    t.add("docs", 1);
    t.add("pages", u64::from(n));
    if members.len() >= 2 {
        t.add("multi_page_docs", u64::from(n >= 2));
        if n < 2 {
            t.fail(format!(
                "document {serial}: a household of {} fits on {n} page(s)",
                members.len()
            ));
        }
    }
    for (k, page) in pages.iter().enumerate() {
        let at = k as u32 + 1;
        let text = normalize_spaces(page);
        if !text.contains(serial.as_str()) {
            t.fail(format!("document {serial}: page {at}/{n} lacks the serial"));
        }
        // Exactly one page mark, and it is this page's: a page of another document (or of
        // another length) would carry its own.
        let marks = page_marks(&text);
        if marks != [(at, n)] {
            t.fail(format!(
                "document {serial}: page {at} of {n} carries page marks {marks:?}"
            ));
        }
        // The household rule, page by page: the holder on every page, nobody else's.
        match check_names(env.fx, card, &text) {
            Ok(()) => {}
            Err(NameFault::Holder) => t.fail(format!(
                "document {serial}: page {at}/{n} does not name the holder"
            )),
            Err(NameFault::Foreign(intruders)) => t.fail(format!(
                "document {serial}: CROSS-DELIVERY: page {at}/{n} names {intruders} person(s) \
                 outside the household"
            )),
        }
    }
}

/// Every page mark "頁 i/n" of a text (spaces around the slash tolerated).
fn page_marks(text: &str) -> Vec<(u32, u32)> {
    const MARK: &str = "頁";
    let mut marks = Vec::new();
    for (at, _) in text.match_indices(MARK) {
        let rest = text[at + MARK.len()..].trim_start();
        let i: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let rest = rest[i.len()..].trim_start();
        let Some(rest) = rest.strip_prefix('/') else {
            continue;
        };
        let rest = rest.trim_start();
        let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let (Ok(i), Ok(n)) = (i.parse(), n.parse()) {
            marks.push((i, n));
        }
    }
    marks
}
