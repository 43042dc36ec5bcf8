//! The kiosk and admin listeners over HTTPS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kofu_testkit::suite::{expect_error, full_card};
use kofu_testkit::{
    CertFiles, Client, DeploymentOptions, TestCa, full_session, presented_certificate,
};

use super::{plain_http_to, start};

fn https() -> DeploymentOptions {
    DeploymentOptions {
        https: true,
        ..DeploymentOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_protocol_and_plain_http_gets_no_answer() {
    let d = start(https());
    let node = d.node(0);
    assert!(node.api.starts_with("https://") && node.admin.starts_with("https://"));
    let card = full_card(d.fixtures(), 0);
    full_session(&d.kiosk(0), d.fixtures(), card, "residence", 1, d.issuer())
        .await
        .expect("a whole session over https");
    let (status, _) = node.admin_get("/readyz", None).expect("admin over https");
    assert_eq!(status, 200);
    for base in [&node.api, &node.admin] {
        let answer = plain_http_to(base);
        assert!(
            !answer.starts_with(b"HTTP/"),
            "plain http got an http answer from {base}: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    // A client that does not trust the node's CA does not get through either.
    let stranger = Client::builder().target(&node.api).build().expect("client");
    assert_eq!(
        stranger
            .request(
                kofu_testkit::Method::GET,
                &format!("{}/v1/issuer-key", node.api),
                None,
                None
            )
            .await
            .status,
        0
    );
}

/// With `--tls-client-ca-file`: no certificate, or one of another CA, is refused at the
/// handshake (no answer at all); a certificate of the CA gets in, and its CN must be
/// the kiosk id of the bearer token (`401 unauthorized_kiosk` otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosk_certificates_are_required_and_must_name_the_token_s_kiosk() {
    let kiosk_ca = Arc::new(CertFiles::new("kiosk ca"));
    let d = start(DeploymentOptions {
        kiosk_ca: Some(kiosk_ca.clone()),
        ..https()
    });
    let listener_ca = d.https_certs().expect("https").clone();
    let api = d.node(0).api.clone();
    let kiosks = &d.fixtures().kiosks;
    let (k0, k1) = (kiosks[0].kiosk_id.as_str(), kiosks[1].kiosk_id.as_str());
    let client = |cert: Option<(&str, &str)>| {
        let mut b = Client::builder()
            .ca_pem(listener_ca.ca.cert_pem())
            .target(&api);
        if let Some((cert, key)) = cert {
            b = b.client_cert_pem(cert.as_bytes(), key.as_bytes());
        }
        b.build().expect("client")
    };
    let card = full_card(d.fixtures(), 0);

    let none = d.kiosk(0).with_client(client(None));
    assert_eq!(none.raw().create_session(card.card_id()).await.status, 0);
    let foreign = TestCa::new("other ca").issue(k0, &[]);
    let foreign = d
        .kiosk(0)
        .with_client(client(Some((&foreign.cert_pem, &foreign.key_pem))));
    assert_eq!(foreign.raw().create_session(card.card_id()).await.status, 0);

    let own = kiosk_ca.ca.issue(k0, &[]);
    let own_client = client(Some((&own.cert_pem, &own.key_pem)));
    // Kiosk 0's certificate with kiosk 1's token: refused, and nothing was opened.
    let borrowed = d.kiosk(1).with_client(own_client.clone());
    expect_error(
        &borrowed.raw().create_session(card.card_id()).await,
        "unauthorized_kiosk",
    );
    let right = d.kiosk(0).with_client(own_client);
    full_session(&right, d.fixtures(), card, "residence", 1, d.issuer())
        .await
        .expect("kiosk 0 with its own certificate");
    // And kiosk 1 with its own certificate is fine too.
    let k1_cert = kiosk_ca.ca.issue(k1, &[]);
    let k1_client = d
        .kiosk(1)
        .with_client(client(Some((&k1_cert.cert_pem, &k1_cert.key_pem))));
    assert_eq!(
        k1_client
            .raw()
            .create_session(full_card(d.fixtures(), 1).card_id())
            .await
            .status,
        201
    );
}

/// `SIGHUP` swaps the kiosk listener's certificate for new handshakes; a bad key file
/// is refused with a log line and the certificate in use stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_and_a_bad_one_is_refused() {
    let d = start(https());
    let certs = d.https_certs().expect("https").clone();
    let node = d.node(0);
    let before = presented_certificate(&node.api, &certs).expect("handshake");
    assert_eq!(before, certs.cert.cert_der);

    let next = certs.ca.node_cert();
    assert_ne!(next.serial, certs.cert.serial);
    next.write(certs.dir(), "node");
    node.hangup();
    let swapped =
        wait_for(|| presented_certificate(&node.api, &certs) == Some(next.cert_der.clone()));
    assert!(swapped, "the new certificate was not served after SIGHUP");
    let card = full_card(d.fixtures(), 0);
    full_session(&d.kiosk(0), d.fixtures(), card, "residence", 1, d.issuer())
        .await
        .expect("a session after the swap");

    // A key that is not PEM: refused, the swapped-in certificate stays.
    std::fs::write(&certs.key_file, "not a key").expect("write");
    node.hangup();
    let refused = wait_for(|| node.logs().contains("reload refused"));
    assert!(refused, "no log line for the refused reload");
    // Let every listener's reload (kiosk and admin share the files) be logged.
    std::thread::sleep(Duration::from_millis(300));
    let refusals = node.logs().matches("reload refused").count();
    assert_eq!(
        presented_certificate(&node.api, &certs),
        Some(next.cert_der.clone())
    );
    // A key of another certificate: refused as well.
    let other = certs.ca.node_cert();
    std::fs::write(&certs.key_file, &other.key_pem).expect("write");
    node.hangup();
    let twice = wait_for(|| node.logs().matches("reload refused").count() > refusals);
    assert!(twice, "a mismatched key was not refused");
    assert_eq!(
        presented_certificate(&node.api, &certs),
        Some(next.cert_der)
    );
}

fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
