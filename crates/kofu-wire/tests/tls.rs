//! The link inside mutual TLS (issue 11): calls flow between nodes holding certificates
//! of one cluster CA; a node with a certificate of another CA, or none, or speaking
//! plaintext, gets no call through in either direction and reaches no handler; the
//! bytes on the wire carry nothing of the frames; and the pre-authentication limits
//! hold for the TLS handshake too.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{SECRET, about_a_second, call, call_through, hung_up, idle_connections};
use futures::FutureExt;
use kofu_proto::wire::Body;
use kofu_proto::{KioskId, SessionId, SessionOp};
use kofu_testkit::TestCa;
use kofu_wire::{
    CLUSTER_SERVER_NAME, CallHandler, ClusterTls, LinkAuth, MAX_PRE_AUTH, WireClient, WireServer,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CALL: Duration = Duration::from_secs(5);

fn tls_of(ca: &TestCa, identity: &TestCa) -> ClusterTls {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der().to_vec()))
        .expect("ca root");
    let cert = identity.node_cert();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der));
    ClusterTls::from_parts(roots, vec![CertificateDer::from(cert.cert_der)], key).expect("tls")
}

/// Trusts `ca` and presents a certificate of `ca`.
fn member(ca: &TestCa) -> LinkAuth {
    LinkAuth::new(SECRET).with_tls(tls_of(ca, ca))
}

fn counting(calls: Arc<AtomicUsize>) -> CallHandler {
    Arc::new(move |body: Body, _| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { body }.boxed()
    })
}

async fn server(auth: LinkAuth) -> (WireServer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server =
        WireServer::serve(listener, "node-b", auth, counting(calls.clone())).expect("serve");
    (server, calls)
}

#[test]
fn the_testkit_names_the_cluster_as_the_link_does() {
    assert_eq!(kofu_testkit::CLUSTER_SERVER_NAME, CLUSTER_SERVER_NAME);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_one_ca_talk() {
    let ca = TestCa::new("cluster ca");
    let (server, calls) = server(member(&ca)).await;
    let client = WireClient::connect(server.local_addr(), "node-a", member(&ca))
        .await
        .expect("connect");
    assert_eq!(client.peer_node_id(), "node-b");
    for _ in 0..3 {
        assert_eq!(client.call(call(), CALL).await.expect("call"), call());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A node whose certificate another CA issued cannot call in, and a node of the cluster
/// does not accept such a server either: neither end's handler ever runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_ca_gets_nothing_through() {
    let ca = TestCa::new("cluster ca");
    let other = TestCa::new("other ca");
    let (server, calls) = server(member(&ca)).await;
    // Its own CA's certificate, the cluster secret known: refused by the cluster.
    let outsider = WireClient::connect(server.local_addr(), "node-x", member(&other)).await;
    assert!(outsider.is_err(), "a foreign certificate got in");
    // Trusting the cluster CA does not help when its certificate is foreign.
    let mixed = LinkAuth::new(SECRET).with_tls(tls_of(&ca, &other));
    let mixed = WireClient::connect(server.local_addr(), "node-x", mixed).await;
    assert!(mixed.is_err(), "a foreign certificate got in");
    // And a cluster node does not talk to an outsider's server.
    let (foreign, foreign_calls) = self::server(member(&other)).await;
    let to_foreign = WireClient::connect(foreign.local_addr(), "node-a", member(&ca)).await;
    assert!(to_foreign.is_err(), "a node talked to a foreign server");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(foreign_calls.load(Ordering::SeqCst), 0);
}

/// TLS is all or nothing: a plaintext node and a TLS node never complete a link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_tls_do_not_mix() {
    let ca = TestCa::new("cluster ca");
    let (tls_server, tls_calls) = server(member(&ca)).await;
    let plain = WireClient::connect(tls_server.local_addr(), "node-a", SECRET).await;
    assert!(plain.is_err(), "a plaintext client got in");
    let (plain_server, plain_calls) = server(LinkAuth::new(SECRET)).await;
    let tls = WireClient::connect(plain_server.local_addr(), "node-a", member(&ca)).await;
    assert!(tls.is_err(), "a tls client linked with a plaintext server");
    assert_eq!(tls_calls.load(Ordering::SeqCst), 0);
    assert_eq!(plain_calls.load(Ordering::SeqCst), 0);
}

/// The right certificate without the cluster secret is not enough either (the HMAC
/// handshake stays a second factor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_the_secret_is_refused() {
    let ca = TestCa::new("cluster ca");
    let (server, calls) = server(member(&ca)).await;
    let wrong = LinkAuth::new(b"not the cluster secret").with_tls(tls_of(&ca, &ca));
    let client = WireClient::connect(server.local_addr(), "node-a", wrong).await;
    assert!(client.is_err(), "a wrong secret got in over tls");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Forwards one connection through a recording proxy: what crosses the wire is TLS
/// records, and a marker carried in a call never appears in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_between_nodes_hide_the_frames() {
    let ca = TestCa::new("cluster ca");
    let (server, _) = server(member(&ca)).await;
    let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let proxy_addr = proxy.local_addr().expect("addr");
    let upstream = server.local_addr();
    let captured = Arc::new(capture::Captured::default());
    let cap = captured.clone();
    tokio::spawn(async move {
        let (inbound, _) = proxy.accept().await.expect("accept");
        let outbound = TcpStream::connect(upstream).await.expect("upstream");
        let (mut ir, mut iw) = inbound.into_split();
        let (mut or, mut ow) = outbound.into_split();
        let (c1, c2) = (cap.clone(), cap);
        let up = async move {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = ir.read(&mut buf).await {
                if n == 0 || ow.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                c1.add(&buf[..n]);
            }
        };
        let down = async move {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = or.read(&mut buf).await {
                if n == 0 || iw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                c2.add(&buf[..n]);
            }
        };
        tokio::join!(up, down);
    });
    let client = WireClient::connect(proxy_addr, "node-a", member(&ca))
        .await
        .expect("connect through the proxy");
    let marker = KioskId::parse("MARKER-KIOSK-0042").expect("kiosk");
    let body = Body::Call {
        session: SessionId::new(3, [7; 16]),
        kiosk: marker,
        op: SessionOp::Close,
        wait_ms: 0,
    };
    assert_eq!(client.call(body.clone(), CALL).await.expect("call"), body);
    let bytes = captured.bytes();
    assert!(bytes.len() > 500, "the proxy saw {} bytes", bytes.len());
    for needle in [&b"MARKER-KIOSK-0042"[..], b"node-a", b"node-b", b"kiosk"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{:?} crossed the wire in clear",
            String::from_utf8_lossy(needle)
        );
    }
    // TLS records: handshake (22) first, application data (23) later.
    assert_eq!(bytes[0], 22, "not a tls record");
}

/// What a proxy saw, shared by its two directions.
mod capture {
    #[derive(Default)]
    pub struct Captured(std::sync::Mutex<Vec<u8>>);

    impl Captured {
        pub fn add(&self, bytes: &[u8]) {
            if let Ok(mut all) = self.0.lock() {
                all.extend_from_slice(bytes);
            }
        }

        pub fn bytes(&self) -> Vec<u8> {
            self.0.lock().map(|b| b.clone()).unwrap_or_default()
        }
    }
}

/// Idle connections that never start TLS are evicted like any unauthenticated one, so
/// a peer still gets through a flood of them; and a connection that opens a TLS
/// handshake and stalls is closed within the pre-authentication second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preauth_limits_cover_the_tls_handshake() {
    const FLOOD: usize = 600;
    const { assert!(FLOOD > MAX_PRE_AUTH) };
    let ca = TestCa::new("cluster ca");
    let (server, _) = server(member(&ca)).await;
    let flood = idle_connections(server.local_addr(), FLOOD).await;
    assert_eq!(
        call_through(server.local_addr(), || member(&ca)).await,
        call()
    );
    drop(flood);

    // A TLS record header announcing a ClientHello, then silence.
    let mut stalled = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    stalled
        .write_all(&[22, 3, 1, 0, 200, 1, 0, 0, 196])
        .await
        .expect("write");
    about_a_second(hung_up(&mut stalled).await);
}
