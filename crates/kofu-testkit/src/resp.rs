//! A small blocking RESP2 client, so that tests can read what kofu left in Redis (audit
//! streams, every key and value for the privacy scan) without a Redis crate in the
//! harness: kofu-coord stays the only crate that speaks Redis for the product.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A reply, as RESP2 gives it (simple and bulk strings are both `Bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    Int(i64),
    Bytes(Vec<u8>),
    Error(String),
    Array(Vec<Reply>),
}

impl Reply {
    /// The text of a string reply.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// Every byte string anywhere in the reply, depth first.
    pub fn flatten(self, out: &mut Vec<Vec<u8>>) {
        match self {
            Reply::Bytes(b) => out.push(b),
            Reply::Int(i) => out.push(i.to_string().into_bytes()),
            Reply::Array(items) => items.into_iter().for_each(|r| r.flatten(out)),
            Reply::Nil | Reply::Error(_) => {}
        }
    }

    fn items(self) -> Vec<Reply> {
        match self {
            Reply::Array(items) => items,
            _ => Vec::new(),
        }
    }
}

/// One connection to a Redis server on loopback.
#[derive(Debug)]
pub struct RedisConn {
    reader: BufReader<TcpStream>,
}

impl RedisConn {
    /// Connects to `127.0.0.1:port`; every reply must come within 5 s.
    pub fn connect(port: u16) -> std::io::Result<RedisConn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_nodelay(true)?;
        Ok(RedisConn {
            reader: BufReader::new(stream),
        })
    }

    /// Sends one command; an error reply is `Ok(Reply::Error)`.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> std::io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&out)?;
        self.read_reply()
    }

    /// [`RedisConn::call`] that fails the test on an I/O or error reply.
    pub fn must<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        let name = args
            .first()
            .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned());
        match self.call(args) {
            Ok(Reply::Error(e)) => panic!("redis {name:?}: {e}"),
            Ok(r) => r,
            Err(e) => panic!("redis {name:?}: {e}"),
        }
    }

    /// Every key matching `pattern`, by `SCAN` (never `KEYS`).
    pub fn scan(&mut self, pattern: &str) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        let mut cursor = b"0".to_vec();
        // A scan of a test's keyspace ends long before this many rounds.
        for _ in 0..100_000 {
            let reply = self.must(&[
                b"SCAN".as_slice(),
                &cursor,
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                b"1000",
            ]);
            let mut parts = reply.items().into_iter();
            let (Some(Reply::Bytes(next)), Some(found)) = (parts.next(), parts.next()) else {
                panic!("SCAN: malformed reply");
            };
            for key in found.items() {
                if let Reply::Bytes(k) = key {
                    keys.push(k);
                }
            }
            if next == b"0" {
                return keys;
            }
            cursor = next;
        }
        panic!("SCAN did not finish");
    }

    /// Everything a key holds, whatever its type (string, hash, list, set, sorted set,
    /// stream: every member, field and value), plus its `DUMP` serialization; empty when
    /// the key is gone.
    pub fn contents(&mut self, key: &[u8]) -> Vec<Vec<u8>> {
        let kind = self
            .must(&[b"TYPE".as_slice(), key])
            .text()
            .unwrap_or_default();
        let read: &[&[u8]] = match kind.as_str() {
            "string" => &[b"GET"],
            "hash" => &[b"HGETALL"],
            "list" => &[b"LRANGE", b"0", b"-1"],
            "set" => &[b"SMEMBERS"],
            "zset" => &[b"ZRANGE", b"0", b"-1", b"WITHSCORES"],
            "stream" => &[b"XRANGE", b"-", b"+"],
            "none" => return Vec::new(),
            other => panic!("key of unexpected type {other}"),
        };
        let mut args: Vec<&[u8]> = vec![read[0], key];
        args.extend_from_slice(&read[1..]);
        let mut out = Vec::new();
        self.must(&args).flatten(&mut out);
        self.must(&[b"DUMP".as_slice(), key]).flatten(&mut out);
        out
    }

    /// A stream's entries, each as its field/value pairs in order.
    pub fn stream(&mut self, key: &[u8]) -> Vec<Vec<(String, String)>> {
        let reply = self.must(&[b"XRANGE".as_slice(), key, b"-", b"+"]);
        reply
            .items()
            .into_iter()
            .map(|entry| {
                let mut parts = entry.items().into_iter();
                let _id = parts.next();
                let fields: Vec<String> = parts
                    .next()
                    .map(Reply::items)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(Reply::text)
                    .collect();
                fields
                    .chunks(2)
                    .filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone())))
                    .collect()
            })
            .collect()
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        if !line.ends_with("\r\n") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "reply cut short",
            ));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn read_reply(&mut self) -> std::io::Result<Reply> {
        let line = self.line()?;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed reply");
        let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        let number = || rest.parse::<i64>().map_err(|_| bad());
        Ok(match kind {
            "+" => Reply::Bytes(rest.as_bytes().to_vec()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(number()?),
            "$" => match usize::try_from(number()?) {
                Err(_) => Reply::Nil,
                Ok(len) => {
                    let mut buf = vec![0u8; len + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(len);
                    Reply::Bytes(buf)
                }
            },
            "*" => match usize::try_from(number()?) {
                Err(_) => Reply::Nil,
                Ok(n) => Reply::Array(
                    (0..n)
                        .map(|_| self.read_reply())
                        .collect::<std::io::Result<_>>()?,
                ),
            },
            _ => return Err(bad()),
        })
    }
}
