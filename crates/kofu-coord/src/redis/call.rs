//! One script call, optionally followed by `WAIT` in the same pipeline. The `WAIT` must
//! travel on the connection that carried the write: Redis counts replica
//! acknowledgements up to that connection's last write, and a fresh connection (after a
//! reconnect between two separate calls) has none, so its `WAIT` would report replicas
//! that never got the write. In one pipeline both fail together or neither does.

use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{Cmd, ErrorKind, RedisResult, Script, ServerErrorKind, ToRedisArgs, Value};

use super::millis;
use crate::StoreError;

/// How long a replicated write may wait for its replicas before it is reported
/// unavailable (the caller answers `503`; a retry converges).
pub(crate) const REPLICA_WAIT: Duration = Duration::from_millis(500);

pub(crate) struct Call<'a> {
    script: &'a Script,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(script: &'a Script) -> Call<'a> {
        Call {
            script,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    pub(crate) fn key(&mut self, key: impl ToRedisArgs) -> &mut Call<'a> {
        key.write_redis_args(&mut self.keys);
        self
    }

    pub(crate) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Call<'a> {
        arg.write_redis_args(&mut self.args);
        self
    }

    fn evalsha(&self) -> Cmd {
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash())
            .arg(self.keys.len())
            .arg(&*self.keys)
            .arg(&*self.args);
        cmd
    }

    async fn load(&self, conn: &mut ConnectionManager) -> RedisResult<()> {
        self.script
            .prepare_invoke()
            .load_async(conn)
            .await
            .map(drop)
    }

    /// Runs the script (loading it on a server that does not know it yet).
    pub(crate) async fn run(&self, conn: &mut ConnectionManager) -> RedisResult<Value> {
        match self.evalsha().query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.load(conn).await?;
                self.evalsha().query_async(conn).await
            }
            other => other,
        }
    }

    /// Runs the script, then waits until `replicas` replicas acknowledged everything this
    /// connection wrote so far (at most `REPLICA_WAIT`). Returns the script's reply and
    /// whether the replicas acknowledged; with `replicas == 0` no `WAIT` is sent.
    pub(crate) async fn run_replicated(
        &self,
        conn: &mut ConnectionManager,
        replicas: u32,
    ) -> RedisResult<(Value, bool)> {
        if replicas == 0 {
            return Ok((self.run(conn).await?, true));
        }
        let query = || {
            let mut pipe = ::redis::pipe();
            pipe.add_command(self.evalsha())
                .cmd("WAIT")
                .arg(replicas)
                .arg(millis(REPLICA_WAIT));
            pipe
        };
        let (reply, acked): (Value, i64) = match query().query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.load(conn).await?;
                query().query_async(conn).await?
            }
            other => other?,
        };
        Ok((reply, acked >= i64::from(replicas)))
    }
}

/// A write the replicas did not acknowledge in time: it may or may not survive a
/// failover, so it is not reported done.
pub(crate) fn not_replicated(what: &str) -> StoreError {
    StoreError::Unavailable(format!("{what} not replicated in time"))
}
