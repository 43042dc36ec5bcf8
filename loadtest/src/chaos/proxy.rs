//! TCP relays that add delay to one node's links, standing in for `tc netem`, which this
//! kernel lacks. Every connection a node opens to Redis, a Sentinel or a peer's internal
//! listener is redirected (DNAT inside its namespace) to a relay in the root namespace,
//! which passes the bytes on unchanged, in order; while a node is "slow", what it sends
//! is held back by the delay first, as netem on its interface would. Without a delay a
//! relay only copies.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The current delay of what each node sends, in milliseconds.
#[derive(Debug)]
pub struct Delays(Vec<AtomicU64>);

impl Delays {
    pub fn new(nodes: usize) -> Arc<Delays> {
        Arc::new(Delays((0..nodes).map(|_| AtomicU64::new(0)).collect()))
    }

    pub fn set(&self, node: usize, delay: Duration) {
        if let Some(d) = self.0.get(node) {
            d.store(delay.as_millis() as u64, Ordering::Relaxed);
        }
    }

    fn of(&self, node: Option<usize>) -> Duration {
        node.and_then(|n| self.0.get(n))
            .map_or(Duration::ZERO, |d| {
                Duration::from_millis(d.load(Ordering::Relaxed))
            })
    }
}

/// One relay: where it listens, where it connects, from which address.
pub struct Relay {
    pub listen: Ipv4Addr,
    pub upstream: SocketAddrV4,
    /// The source address of the upstream connection (a peer relay's, so that a
    /// partition rule can name it).
    pub source: Option<Ipv4Addr>,
    /// The node behind `upstream`, for a relay towards a peer: what it answers is
    /// delayed when that node is slow.
    pub server_node: Option<usize>,
}

/// The relays of a run; aborted when dropped.
pub struct Relays {
    tasks: JoinSet<()>,
}

impl Relays {
    pub fn new() -> Relays {
        Relays {
            tasks: JoinSet::new(),
        }
    }

    /// Starts `relay` on a free port of its listen address; returns the port. `node_of`
    /// names the node a client address belongs to.
    pub async fn start(
        &mut self,
        relay: Relay,
        delays: Arc<Delays>,
        node_of: Arc<dyn Fn(Ipv4Addr) -> Option<usize> + Send + Sync>,
    ) -> anyhow::Result<u16> {
        let listener = TcpListener::bind((relay.listen, 0)).await?;
        let port = listener.local_addr()?.port();
        self.tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((client, from)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                let client_node = match from {
                    SocketAddr::V4(a) => node_of(*a.ip()),
                    SocketAddr::V6(_) => None,
                };
                let delays = delays.clone();
                let (upstream, source, server_node) =
                    (relay.upstream, relay.source, relay.server_node);
                conns.spawn(async move {
                    let Ok(server) = connect(upstream, source).await else {
                        return;
                    };
                    pipe(client, server, delays, client_node, server_node).await;
                });
            }
        });
        Ok(port)
    }
}

async fn connect(to: SocketAddrV4, from: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = from {
        socket.bind(SocketAddr::from((ip, 0)))?;
    }
    let stream = socket.connect(SocketAddr::V4(to)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Copies both ways until both sides closed; bytes sent by a slow node wait first.
async fn pipe(
    client: TcpStream,
    server: TcpStream,
    delays: Arc<Delays>,
    client_node: Option<usize>,
    server_node: Option<usize>,
) {
    let _ = client.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = one_way(cr, sw, delays.clone(), client_node);
    let down = one_way(sr, cw, delays, server_node);
    tokio::join!(up, down);
}

async fn one_way(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delays: Arc<Delays>,
    sender: Option<usize>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = Instant::now() + delays.of(sender);
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let write = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
