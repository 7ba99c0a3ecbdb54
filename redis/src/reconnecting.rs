//! One connection, remade when it breaks or when the master it reached was demoted: for a
//! long-lived reader such as a worker's inbox, which wants neither a pool nor a second
//! connection, but must follow a Sentinel failover like the pools do.

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::pool::{Conn, Manager};

/// A connection to an [`Endpoint`](crate::endpoint::Endpoint), made on first use and again after
/// a command on it broke it (an I/O error, a timeout, `READONLY`) or the sentinels named
/// another master. The command that found it broken fails; the next one reconnects.
pub struct Reconnecting {
    manager: Manager,
    conn: Option<Conn>,
    db: i64,
}

impl Reconnecting {
    /// A connection through `manager`, not made yet.
    pub fn new(manager: Manager) -> Reconnecting {
        Reconnecting {
            manager,
            conn: None,
            db: 0,
        }
    }

    /// The live connection, made again if it is missing, broken or to a demoted master.
    async fn live(&mut self) -> redis::RedisResult<&mut Conn> {
        use bb8::ManageConnection;
        if self.conn.is_some() {
            self.manager.refresh_if_due().await;
        }
        let usable = self
            .conn
            .take()
            .and_then(|mut conn| (!self.manager.has_broken(&mut conn)).then_some(conn));
        let conn = match usable {
            Some(conn) => conn,
            None => {
                let mut conn = self.manager.connect().await?;
                self.db = conn.get().get_db();
                conn
            }
        };
        Ok(self.conn.insert(conn))
    }
}

impl ConnectionLike for Reconnecting {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let conn = self.live().await?;
            let result = conn.get().req_packed_command(cmd).await;
            conn.check(result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let conn = self.live().await?;
            let result = conn.get().req_packed_commands(cmd, offset, count).await;
            conn.check(result)
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}
