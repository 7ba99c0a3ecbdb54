//! The Redis connection pool.
//!
//! bb8 with a small manager of our own rather than bb8-redis's: bb8-redis can only find a dead
//! connection by a PING on every checkout (a second round trip per publish), and otherwise keeps
//! handing it out forever. Ours marks a connection broken when a command on it fails with an I/O
//! error, and bb8 drops it instead of returning it to the pool.

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use std::time::Duration;

use crate::endpoint::Endpoint;

/// A pooled connection and whether an I/O error has been seen on it.
pub struct Conn {
    inner: MultiplexedConnection,
    broken: bool,
    /// The master generation it was made in (behind Sentinel; see [`Endpoint::generation`]).
    generation: u64,
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
    endpoint: Endpoint,
    config: AsyncConnectionConfig,
}

impl Manager {
    /// A manager for connections to `endpoint` whose commands time out after
    /// `response_timeout`.
    pub fn new(
        endpoint: Endpoint,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Manager {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        Manager { endpoint, config }
    }

    /// Behind Sentinel, asks the sentinels again if that is due, so that
    /// [`has_broken`](bb8::ManageConnection::has_broken) learns of a failover.
    pub async fn refresh_if_due(&self) {
        self.endpoint.refresh_if_due().await;
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Conn, redis::RedisError> {
        let client = self.endpoint.client().await?;
        // Read after the sentinels were asked: the connection goes to the master they named.
        let generation = self.endpoint.generation();
        let mut inner = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        if self.endpoint.checks_role() && !crate::sentinel::is_master(&mut inner).await? {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                "the sentinels named a Redis that is not a master (a failover is under way)",
            )));
        }
        Ok(Conn {
            inner,
            broken: false,
            generation,
        })
    }

    /// Checked on every checkout, with no round trip to Redis: behind Sentinel, a connection
    /// made before the named master changed goes to a demoted master (which may still accept
    /// writes for a while, and lose them when it resyncs), so it is dropped and another made.
    async fn is_valid(&self, conn: &mut Conn) -> Result<(), redis::RedisError> {
        self.endpoint.refresh_if_due().await;
        if conn.generation == self.endpoint.generation() {
            return Ok(());
        }
        conn.broken = true;
        Err(redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "the sentinels name another master now",
        )))
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || conn.generation != self.endpoint.generation()
    }
}

/// A connection from `pool`. With none in the pool at all (Redis went away and every connection
/// broke), one is made here first, so a Redis that cannot be reached fails the caller at once:
/// bb8's own `get` would leave the connecting to its background task and wait out its whole
/// timeout, learning nothing of the failure, and every publish of an outage would take that
/// long to be refused.
pub async fn checkout(
    pool: &bb8::Pool<Manager>,
) -> Result<bb8::PooledConnection<'_, Manager>, bb8::RunError<redis::RedisError>> {
    if pool.state().connections == 0 {
        let conn = pool.dedicated_connection().await?;
        // Another caller may have filled the pool meanwhile: then this one is surplus.
        let _ = pool.add(conn);
    }
    pool.get().await
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
