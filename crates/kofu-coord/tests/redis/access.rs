//! How a node reaches Redis in a real deployment (issue 11): ACL credentials of the URL
//! reach the Sentinels and the primary alike, and `rediss://` speaks TLS verified
//! against the given CA. Wrong or missing credentials, a CA that did not issue the
//! server's certificate, and plaintext to a TLS port all fail to connect.

use std::sync::Arc;

use kofu_coord::redis::{ConnectOptions, connect, connect_with};

use crate::round_trip;
use kofu_testkit::{CertFiles, RedisOptions, RedisServer, SentinelSetup};

fn acl() -> Option<(String, String)> {
    Some(("kofu".to_owned(), "s3cret-acl-pass".to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_credentials_reach_the_sentinels_and_the_primary() {
    let setup = tokio::task::block_in_place(|| SentinelSetup::start_with_acl(acl()));
    let url = setup.url();
    assert!(url.contains("kofu:s3cret-acl-pass@"), "{url}");
    let conn = connect(&url).await.expect("connect with credentials");
    round_trip(&conn).await;
    let anonymous = url.replace("kofu:s3cret-acl-pass@", "");
    assert!(connect(&anonymous).await.is_err(), "no credentials got in");
    let wrong = url.replace("s3cret-acl-pass", "wrong");
    assert!(connect(&wrong).await.is_err(), "a wrong password got in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_is_verified_against_the_given_ca() {
    let certs = Arc::new(CertFiles::new("redis ca"));
    let server = tokio::task::block_in_place(|| {
        RedisServer::start_with(RedisOptions {
            acl: acl(),
            tls: Some(certs.clone()),
            ..RedisOptions::default()
        })
    });
    let url = server.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let with_ca = ConnectOptions {
        ca_pem: Some(certs.ca.cert_pem().as_bytes().to_vec()),
    };
    let conn = connect_with(&url, &with_ca)
        .await
        .expect("connect over tls");
    round_trip(&conn).await;

    // Another CA: the server's certificate does not verify.
    let other = CertFiles::new("other ca");
    let other = ConnectOptions {
        ca_pem: Some(other.ca.cert_pem().as_bytes().to_vec()),
    };
    assert!(
        connect_with(&url, &other).await.is_err(),
        "a foreign ca verified"
    );
    // Plaintext to the TLS port.
    let plain = url.replacen("rediss://", "redis://", 1);
    assert!(
        connect(&plain).await.is_err(),
        "plaintext talked to the tls port"
    );
}
