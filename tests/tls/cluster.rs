//! Between nodes, and between nodes and Redis.

use std::sync::{Arc, Mutex};

use kofu_proto::CardId;
use kofu_testkit::suite::full_card;
use kofu_testkit::{
    Card, CertFiles, Deployment, DeploymentOptions, LinkSecurity, NodeHook, RedisOptions,
    RedisServer, SentinelSetup, full_session,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::start;

const SHARDS: u32 = 64;

fn two_nodes(link: LinkSecurity) -> DeploymentOptions {
    DeploymentOptions {
        link,
        shard_count: Some(SHARDS),
        ..DeploymentOptions::nodes(2)
    }
}

/// Cards whose shard `owner` holds, per `owners` (shard → node id).
fn cards_owned_by<'a>(
    d: &'a Deployment,
    owners: &[Option<String>],
    owner: &str,
    n: usize,
) -> Vec<&'a Card> {
    d.fixtures()
        .cards
        .iter()
        .filter(|c| c.usable())
        .filter(|c| {
            let id = CardId::parse(c.card_id()).expect("fixture card id");
            owners[kofu_proto::shard_of(&id, SHARDS) as usize].as_deref() == Some(owner)
        })
        .take(n)
        .collect()
}

/// Nodes whose certificates come from different CAs share Redis (and so agree on who
/// owns what) but never link: a request for the other node's shard is not forwarded
/// (`503`), and neither node ever receives a forwarded call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_of_another_ca_cannot_join() {
    let mut opts = two_nodes(LinkSecurity::CaPerNode);
    opts.node.args = vec!["--move-wait-ms".to_owned(), "1500".to_owned()];
    let d = start(opts);
    let owners = tokio::task::block_in_place(|| d.wait_converged());
    let at_1 = cards_owned_by(&d, &owners, "node-1", 2);
    let at_0 = cards_owned_by(&d, &owners, "node-0", 2);
    assert_eq!((at_0.len(), at_1.len()), (2, 2));
    let via_0 = d.kiosk(0).pinned(0);
    let via_1 = d.kiosk(1).pinned(1);
    for (via, card) in at_1
        .iter()
        .map(|c| (&via_0, c))
        .chain(at_0.iter().map(|c| (&via_1, c)))
    {
        let r = via.raw().create_session(card.card_id()).await;
        assert_eq!(
            r.status,
            503,
            "forwarded to a node of another ca: {}",
            r.text()
        );
    }
    // Each still serves its own shards.
    assert_eq!(
        via_0.raw().create_session(at_0[0].card_id()).await.status,
        201
    );
    let received = d
        .metric_sum("kofu_forwards_received_total")
        .await
        .expect("metrics");
    assert_eq!(
        received, 0.0,
        "a node served a call from a node of another ca"
    );
    let logs = d.node(1).logs();
    assert!(
        logs.contains("tls handshake failed"),
        "node-1 did not refuse node-0's handshake"
    );
}

/// Everything one direction of a TCP proxy saw.
#[derive(Default)]
struct Capture {
    bytes: Mutex<Vec<u8>>,
    upstream: Mutex<Option<String>>,
}

impl Capture {
    fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// Copies `from` to `to` until either side closes, recording what passed.
async fn pump(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    capture: &Capture,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if let Ok(mut all) = capture.bytes.lock() {
            all.extend_from_slice(&buf[..n]);
        }
    }
}

/// A forwarding proxy on loopback recording both directions of every connection to the
/// upstream set in `capture` (known only once the node's options are made).
async fn proxy(listener: TcpListener, capture: Arc<Capture>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            return;
        };
        let upstream = capture.upstream.lock().ok().and_then(|u| u.clone());
        let Some(upstream) = upstream else { continue };
        let Ok(outbound) = TcpStream::connect(upstream).await else {
            continue;
        };
        let capture = capture.clone();
        tokio::spawn(async move {
            let (mut ir, mut iw) = inbound.into_split();
            let (mut or, mut ow) = outbound.into_split();
            tokio::join!(
                pump(&mut ir, &mut ow, &capture),
                pump(&mut or, &mut iw, &capture)
            );
        });
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// What of `cards` the captured bytes show: card ids, and names as UTF-8, as UTF-16BE
/// and as the hex operands every certificate PDF carries them in.
fn leaks(bytes: &[u8], cards: &[&Card]) -> Vec<String> {
    let mut found = Vec::new();
    for c in cards {
        let name = &c.full_name;
        let utf16: Vec<u8> = name.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let family = name.split(' ').next().unwrap_or(name);
        let family16: Vec<u8> = family.encode_utf16().flat_map(u16::to_be_bytes).collect();
        for (what, needle) in [
            ("card id", c.card_id().as_bytes().to_vec()),
            ("name utf-8", name.as_bytes().to_vec()),
            ("name utf-16be", utf16),
            ("family name utf-16be", family16),
            ("name in a pdf", kofu_proto::doctext::name_pattern(name)),
        ] {
            if contains(bytes, &needle) {
                found.push(what.to_owned());
            }
        }
    }
    found
}

/// Two nodes; node-1 is reached by node-0 only through a recording proxy (its
/// advertised internal address). Sessions for node-1's cards sent to node-0 complete
/// through it; returns what the proxy saw and the cards used.
async fn sessions_through_a_proxy(link: LinkSecurity) -> (Vec<u8>, Vec<Card>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy");
    let proxy_addr = listener.local_addr().expect("addr");
    let capture = Arc::new(Capture::default());
    tokio::spawn(proxy(listener, capture.clone()));
    let mut opts = two_nodes(link);
    let upstream = capture.clone();
    opts.hook = Some(NodeHook(Arc::new(move |n, node| {
        if n != 1 {
            return;
        }
        let at = node.args.iter().position(|a| a == "--internal-listen");
        let internal = at.and_then(|i| node.args.get(i + 1)).cloned();
        if let Ok(mut u) = upstream.upstream.lock() {
            *u = internal;
        }
        node.args
            .extend(["--internal-advertise".to_owned(), proxy_addr.to_string()]);
    })));
    let d = start(opts);
    let owners = tokio::task::block_in_place(|| d.wait_converged());
    let cards: Vec<Card> = cards_owned_by(&d, &owners, "node-1", 3)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(cards.len(), 3);
    for (i, card) in cards.iter().enumerate() {
        let kiosk = d.kiosk(i).pinned(0);
        // Seal certificates name the holder; residence ones the household too.
        full_session(&kiosk, d.fixtures(), card, "residence", 1, d.issuer())
            .await
            .expect("a forwarded session through the proxy");
    }
    let received = d
        .metric_sum("kofu_forwards_received_total")
        .await
        .expect("metrics");
    assert!(received >= 15.0, "only {received} calls were forwarded");
    (capture.bytes(), cards)
}

/// An on-path observer between two nodes sees TLS records only: no card id, no name.
/// The same run without TLS shows both, so the capture would catch a leak.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traffic_between_nodes_shows_no_card_id_and_no_name() {
    let (bytes, cards) = sessions_through_a_proxy(LinkSecurity::MutualTls).await;
    let cards: Vec<&Card> = cards.iter().collect();
    // Three documents (several KiB each) crossed.
    assert!(
        bytes.len() > 15_000,
        "the proxy saw only {} bytes",
        bytes.len()
    );
    assert_eq!(bytes[0], 22, "the first byte is not a tls handshake record");
    let found = leaks(&bytes, &cards);
    assert!(found.is_empty(), "in clear between nodes: {found:?}");

    let (plain, cards) = sessions_through_a_proxy(LinkSecurity::Plaintext).await;
    let cards: Vec<&Card> = cards.iter().collect();
    let found = leaks(&plain, &cards);
    assert!(
        found.iter().any(|f| f == "card id") && found.iter().any(|f| f == "name in a pdf"),
        "the capture misses what plaintext carries: {found:?}"
    );
}

/// Redis with an ACL user (no default user) on the primary, the replica and the
/// Sentinels: a cluster whose URL carries `user:password@` serves whole sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_with_acl_credentials_behind_sentinel_serves() {
    let acl = Some(("kofu".to_owned(), "acl-pass-0123".to_owned()));
    let sentinel = tokio::task::block_in_place(|| SentinelSetup::start_with_acl(acl));
    let opts = DeploymentOptions {
        redis_url: Some(sentinel.url()),
        ..two_nodes(LinkSecurity::MutualTls)
    };
    sessions_served(&start(opts), 4).await;
}

/// `rediss://` with `--redis-ca-file`: the registry loads and a cluster serves over a
/// TLS Redis with ACL credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_serves_over_rediss() {
    let certs = Arc::new(CertFiles::new("redis ca"));
    let redis = tokio::task::block_in_place(|| {
        RedisServer::start_with(RedisOptions {
            acl: Some(("kofu".to_owned(), "acl-pass-0123".to_owned())),
            tls: Some(certs.clone()),
            ..RedisOptions::default()
        })
    });
    let opts = DeploymentOptions {
        redis_url: Some(redis.url()),
        redis_ca_file: Some(certs.ca_file.clone()),
        ..two_nodes(LinkSecurity::MutualTls)
    };
    sessions_served(&start(opts), 2).await;
}

/// `n` whole sessions, each on its own kiosk and card, succeed.
async fn sessions_served(d: &Deployment, n: usize) {
    for i in 0..n {
        let card = full_card(d.fixtures(), i);
        full_session(&d.kiosk(i), d.fixtures(), card, "residence", 1, d.issuer())
            .await
            .unwrap_or_else(|e| panic!("session {i}: {e}"));
    }
}
