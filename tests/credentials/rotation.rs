//! Issuer key rotation without a verification gap, on a two-node cluster whose nodes
//! switch keys at different moments: the next key is published first, kiosks refresh
//! their key set once, then the nodes sign with the new key one after the other (the old
//! key listed as retired), and every document signed by either key during the overlap
//! verifies with the set the kiosks took before the switch. A kiosk that never refreshed
//! cannot verify the new key's documents: that is why the next key is published first.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kofu_kiosk::{Card, Completed, Expected, Plan, Refusal};
use kofu_proto::CertKind;
use kofu_proto::api::{IssuerKeyResponse, KeyStatus};
use kofu_proto::verify::{IssuerKeys, VerifyError};
use kofu_testkit::{Deployment, DeploymentOptions, Fixtures, NodeOptions, RespExt as _, strict};

use super::credentials;

const CONVERGE: Duration = Duration::from_secs(10);

struct KeyFiles {
    _dir: tempfile::TempDir,
    key: std::path::PathBuf,
    next: std::path::PathBuf,
    retired: std::path::PathBuf,
    /// (seed file, public key) of the old and the new key.
    old: (std::path::PathBuf, String),
    new: (std::path::PathBuf, String),
}

impl KeyFiles {
    fn new() -> KeyFiles {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = |name: &str| dir.path().join(name);
        let mint = |name: &str| {
            let path = p(name);
            let public = credentials(&["issuer-key", "--out", path.to_str().expect("path")])
                .stdout
                .trim()
                .to_owned();
            (path, public)
        };
        let (old, new) = (mint("old.key"), mint("new.key"));
        let files = KeyFiles {
            key: p("issuer.key"),
            next: p("issuer-next.pub"),
            retired: p("issuer-retired.pub"),
            old,
            new,
            _dir: dir,
        };
        files.set(&files.old.0, "", "");
        files
    }

    /// What an operator writes for one step of the rotation.
    fn set(&self, seed: &std::path::Path, next: &str, retired: &str) {
        std::fs::copy(seed, &self.key).expect("key file");
        std::fs::write(&self.next, format!("{next}\n")).expect("next key file");
        std::fs::write(&self.retired, format!("# retired issuer keys\n{retired}\n"))
            .expect("retired keys file");
    }

    fn args(&self) -> Vec<String> {
        kofu_testkit::file_args(&[
            ("--issuer-key-file", self.key.as_path()),
            ("--issuer-next-key-file", self.next.as_path()),
            ("--issuer-retired-keys-file", self.retired.as_path()),
        ])
    }
}

async fn published(d: &Deployment, n: usize) -> IssuerKeyResponse {
    kofu_testkit::get(&format!("{}/v1/issuer-key", d.node(n).api))
        .await
        .json()
}

/// `(public key, status)` of every key node `n` publishes, current first.
async fn statuses(d: &Deployment, n: usize) -> Vec<(String, KeyStatus)> {
    let p = published(d, n).await;
    assert_eq!(p.keys[0].public_key, p.public_key, "the current key first");
    p.keys
        .into_iter()
        .map(|k| (k.public_key, k.status))
        .collect()
}

/// SIGHUP to node `n`, then waits (bounded) until it publishes `want`.
async fn hangup_until(d: &Deployment, n: usize, want: &[(&str, KeyStatus)]) {
    d.node(n).hangup();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let got = statuses(d, n).await;
        let got: Vec<(&str, KeyStatus)> = got.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {n} publishes {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sessions on fresh cards (from `next_card` on), each verified with `keys`, until
/// `want` keys signed one or `max` sessions ran; the key ids seen and the sessions.
async fn sessions<'a>(
    d: &'a Deployment,
    keys: &IssuerKeys,
    next_card: &mut usize,
    max: usize,
    want: usize,
) -> (BTreeSet<String>, Vec<(Completed, &'a Card)>) {
    let fx: &Fixtures = d.fixtures();
    let verifier = strict(fx, keys);
    let (mut kids, mut done) = (BTreeSet::new(), Vec::new());
    for _ in 0..max {
        let card = fx.ordinary().nth(*next_card).expect("enough cards");
        *next_card += 1;
        let k = d.kiosk(*next_card % fx.kiosks.len());
        let completed = k
            .complete_session(card, &Plan::once(CertKind::Residence), &verifier)
            .await
            .unwrap_or_else(|e| panic!("a document did not verify: {e}"));
        kids.insert(completed.binding.kid.clone());
        done.push((completed, card));
        if kids.len() >= want {
            break;
        }
    }
    (kids, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_keys_rotate_without_a_verification_gap() {
    let files = KeyFiles::new();
    let opts = DeploymentOptions {
        node: NodeOptions {
            args: files.args(),
            ..NodeOptions::default()
        },
        ..DeploymentOptions::nodes(2)
    };
    let d = tokio::task::block_in_place(|| Deployment::start(opts));
    let (old, new) = (files.old.1.as_str(), files.new.1.as_str());
    let never_refreshed = d.issuer().clone();
    let old_kid = published(&d, 0).await.kid;
    let mut card = 0;

    // 1. The next key is published on every node before it signs.
    files.set(&files.old.0, new, "");
    for n in 0..2 {
        hangup_until(&d, n, &[(old, KeyStatus::Current), (new, KeyStatus::Next)]).await;
    }
    let refreshed = d.client().pinned(1).issuer_keys().await.expect("key set");
    assert_eq!(refreshed.kids().count(), 2);
    let (kids, _) = sessions(&d, &refreshed, &mut card, 4, 2).await;
    assert_eq!(kids, BTreeSet::from([old_kid.clone()]));

    // 2. Node 0 switches to the new key, the old one retired; node 1 still signs with
    // the old key. Documents of both verify with the set taken in step 1.
    files.set(&files.new.0, "", old);
    hangup_until(
        &d,
        0,
        &[(new, KeyStatus::Current), (old, KeyStatus::Retired)],
    )
    .await;
    assert_eq!(
        statuses(&d, 1).await,
        vec![
            (old.to_owned(), KeyStatus::Current),
            (new.to_owned(), KeyStatus::Next)
        ]
    );
    let (kids, overlap) = sessions(&d, &refreshed, &mut card, 60, 2).await;
    assert_eq!(
        kids.len(),
        2,
        "both keys signed during the overlap: {kids:?}"
    );
    // Without step 1, a kiosk could not verify the new key's documents.
    let stale = strict(d.fixtures(), &never_refreshed);
    let mut refused = 0;
    for (c, card) in overlap.iter().filter(|(c, _)| c.binding.kid != old_kid) {
        let order = Expected {
            session_id: &c.session_id,
            kiosk_id: &c.binding.kiosk_id,
            card: &card.id,
            kind: c.kind,
            copies: c.copies,
        };
        let r = stale.verify(&c.document, &order).await;
        assert!(
            matches!(r, Err(Refusal::Release(VerifyError::UnknownKey))),
            "{r:?}"
        );
        refused += 1;
    }
    assert!(refused > 0);

    // 3. Node 1 switches too; every document is the new key's.
    hangup_until(
        &d,
        1,
        &[(new, KeyStatus::Current), (old, KeyStatus::Retired)],
    )
    .await;
    let (kids, _) = sessions(&d, &refreshed, &mut card, 4, 2).await;
    assert_eq!(kids.len(), 1);
    assert!(!kids.contains(&old_kid));

    // 4. Once no document of the old key can be in flight, it is no longer published.
    files.set(&files.new.0, "", "");
    for n in 0..2 {
        hangup_until(&d, n, &[(new, KeyStatus::Current)]).await;
    }
}
