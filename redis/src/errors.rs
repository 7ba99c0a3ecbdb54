//! What a Redis error means for the caller: one classification for the emitter, the inbox and the
//! edge, so they agree on what is worth retrying.

use redis::RedisError;

/// Whether `e` means Redis could not be reached or cannot answer right now (worth retrying),
/// rather than a refusal of the command itself. A cluster failing over (down, a master moved, a
/// replica promoted), or a Redis still loading its data, counts as unreachable for now.
pub fn is_transient(e: &RedisError) -> bool {
    breaks_connection(e)
        || e.is_connection_refusal()
        || matches!(
            e.code(),
            Some("CLUSTERDOWN" | "TRYAGAIN" | "MASTERDOWN" | "READONLY" | "LOADING")
        )
}

/// Whether the connection `e` happened on can no longer be used: a pool must drop it. A
/// `READONLY` answer means the connection reached a replica (the master it was made to has
/// been demoted in a failover): it is remade, through Sentinel when there is one, so nothing is
/// written to a replica twice.
pub fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.code() == Some("READONLY")
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::ErrorKind;

    #[test]
    fn failovers_and_loading_are_transient_and_refusals_are_not() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_transient(&io) && breaks_connection(&io));
        let refused = RedisError::from((ErrorKind::Extension, "WRONGTYPE", "list".to_owned()));
        assert!(!is_transient(&refused) && !breaks_connection(&refused));
    }
}
