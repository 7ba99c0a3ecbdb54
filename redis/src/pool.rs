//! The Redis connection pool.
//!
//! bb8 with a small manager of our own rather than bb8-redis's: bb8-redis can only find a dead
//! connection by a PING on every checkout (a second round trip per publish), and otherwise keeps
//! handing it out forever. Ours marks a connection broken when a command on it fails with an I/O
//! error, and bb8 drops it instead of returning it to the pool.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use std::time::Duration;

/// A pooled connection and whether an I/O error has been seen on it.
pub struct Conn {
    inner: MultiplexedConnection,
    broken: bool,
}

impl Conn {
    /// The connection, to run commands on.
    pub fn get(&mut self) -> &mut MultiplexedConnection {
        &mut self.inner
    }

    /// Marks the connection broken: the pool drops it instead of handing it out again.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Passes `result` through, marking the connection broken when the error means the socket
    /// is no longer usable.
    pub fn check<T>(&mut self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &result
            && super::errors::breaks_connection(e)
        {
            self.broken = true;
        }
        result
    }
}

/// Makes connections for bb8.
pub struct Manager {
    client: Client,
    config: AsyncConnectionConfig,
}

impl Manager {
    /// A manager for `client` whose commands time out after `response_timeout`.
    pub fn new(client: Client, connect_timeout: Duration, response_timeout: Duration) -> Manager {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        Manager { client, config }
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Conn, redis::RedisError> {
        let inner = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        Ok(Conn {
            inner,
            broken: false,
        })
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), redis::RedisError> {
        let result = redis::cmd("PING").query_async::<()>(&mut conn.inner).await;
        conn.check(result)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken
    }
}

/// Checks every idle connection of `pool` with a PING and drops those that fail, so that after
/// Redis restarted none of them is handed out to fail a caller's command. All are taken out at
/// once (each checkout gets a different one); connections in use are left alone.
pub async fn revalidate(pool: &bb8::Pool<Manager>, timeout: Duration) {
    let idle = pool.state().idle_connections as usize;
    let mut taken = Vec::with_capacity(idle);
    for _ in 0..idle {
        match tokio::time::timeout(timeout, pool.get()).await {
            Ok(Ok(conn)) => taken.push(conn),
            _ => break,
        }
    }
    for conn in &mut taken {
        let ping = redis::cmd("PING");
        match tokio::time::timeout(timeout, ping.query_async::<()>(&mut conn.inner)).await {
            Ok(result) => {
                let _ = conn.check(result);
            }
            Err(_) => conn.mark_broken(),
        }
    }
}
