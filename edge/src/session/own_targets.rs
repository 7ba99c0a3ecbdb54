//! The connection's own targets (its user, itself, everyone): joined before `welcome` (resumed
//! from the offsets the client sent, by [`resume`](super::frames)), and the client id's history
//! replayed when the application published to it before the subscription.

use ferrocast_protocol::Scope;
use ferrocast_protocol::frame::server::Offsets;
use ferrocast_protocol::{Target, TargetKey};

use super::replay::Replaying;
use super::{Session, wait_live};
use crate::bus::FROM_START;
use crate::bus::{Bus, BusError};
use crate::fanout::outbox::Direct;

impl<B: Bus> Session<B> {
    /// Opens the connection's own client target's history from its start, if it has one: the
    /// connect hook learns the client id before the connection is subscribed, so the
    /// application may have published to it already, and everything there is for this
    /// connection. The common case, an empty history, costs no Redis call.
    pub(super) async fn client_history(&mut self) -> Result<Option<Replaying>, BusError> {
        let own = self.own.get(Scope::Client);
        let (target, topic) = (own.key.clone(), own.topic);
        let published = self
            .shared
            .bus
            .known_position(&target)
            .is_none_or(|cursor| cursor.last.is_some());
        if !published {
            return Ok(None);
        }
        // An offset of no real epoch: the whole history is news.
        let cursor = self
            .shared
            .bus
            .open_replay(&target, Some(FROM_START))
            .await?;
        let Some(last) = cursor.last else {
            return Ok(None);
        };
        self.seams.set(topic, last);
        Ok(Some(Replaying {
            written: self.outbox.written(topic),
            target,
            topic,
            cursor,
        }))
    }

    /// Where the user and `all` histories stand, for `welcome`: from the bus's own record when
    /// it has one (the usual case, costing no Redis call), else from Redis, both at once.
    pub(super) async fn own_offsets(&self) -> Result<Offsets, BusError> {
        let (user, all) = tokio::join!(
            self.newest_offset(Scope::User),
            self.newest_offset(Scope::All)
        );
        Ok(Offsets {
            user: user?,
            all: all?,
        })
    }

    /// The newest offset of the history of the own target of `scope`, as frames write it.
    async fn newest_offset(&self, scope: Scope) -> Result<Option<String>, BusError> {
        let target = &self.own.get(scope).key;
        let cursor = match self.shared.bus.known_position(target) {
            Some(cursor) => cursor,
            None => self.shared.bus.open_replay(target, None).await?,
        };
        Ok(cursor.last.map(|o| o.to_string()))
    }

    /// Joins the user, client and `all` targets and waits until they are live.
    pub(super) async fn join_own(&mut self) -> bool {
        let mut waiting = Vec::with_capacity(3);
        for scope in [Scope::User, Scope::Client, Scope::All] {
            // Which of the user and `all` targets' messages were written live is noted, for a
            // `resume` to leave out.
            let direct = match scope {
                Scope::Client => Direct::Yes,
                _ => Direct::Noted,
            };
            let member = self.member(direct);
            let own = self.own.get_mut(scope);
            let joined = self.shared.registry.join(&own.key, self.id, member);
            own.topic = joined.topic;
            waiting.push(joined.state);
        }
        for state in waiting {
            if let Err(refusal) = wait_live(state).await {
                tracing::warn!(?refusal, "cannot subscribe a new connection's own targets");
                return false;
            }
        }
        true
    }
}

/// One of the targets every connection is in: its user, itself, or everyone.
pub(super) struct OwnTarget {
    /// The target.
    pub(super) key: TargetKey,
    /// Its registry topic, once joined.
    pub(super) topic: u64,
}

/// The targets every connection is in, by scope.
pub(super) struct OwnTargets {
    user: OwnTarget,
    client: OwnTarget,
    all: OwnTarget,
}

impl OwnTargets {
    /// The targets of user `user`'s connection `client`, not joined yet.
    pub(super) fn new(user: &str, client: &str) -> OwnTargets {
        let own = |target: Target| OwnTarget {
            key: target.key(),
            topic: 0,
        };
        OwnTargets {
            user: own(Target::User(user.to_owned())),
            client: own(Target::Client(client.to_owned())),
            all: own(Target::All),
        }
    }

    /// All three.
    pub(super) fn each(&self) -> [&OwnTarget; 3] {
        [&self.user, &self.client, &self.all]
    }

    /// The one of `scope` (a room is none of them: the `all` target stands in).
    pub(super) fn get(&self, scope: Scope) -> &OwnTarget {
        match scope {
            Scope::User => &self.user,
            Scope::Client => &self.client,
            Scope::Room | Scope::All => &self.all,
        }
    }

    fn get_mut(&mut self, scope: Scope) -> &mut OwnTarget {
        match scope {
            Scope::User => &mut self.user,
            Scope::Client => &mut self.client,
            Scope::Room | Scope::All => &mut self.all,
        }
    }

    /// Whether `topic` is the user's or `all`'s, whose writes are noted.
    pub(super) fn is_noted(&self, topic: u64) -> bool {
        topic == self.user.topic || topic == self.all.topic
    }
}
