//! `resume` (and the `since` of `auth`): the user and `all` scopes' histories replayed after the
//! offsets the client sent, leaving out what was written live meanwhile.

use ferrocast_protocol::Scope;
use ferrocast_protocol::frame::client::ScopeSince;
use ferrocast_protocol::frame::server::{Recovered, ServerFrame};

use super::{Reply, SINCE_COST};
use crate::bus::{Bus, BusError};
use crate::refusal::Refusal;
use crate::session::Session;
use crate::session::replay::Replaying;

impl<B: Bus> Session<B> {
    /// Answers `resume` with `resumed`, then the replays.
    pub(super) async fn on_resume(
        &mut self,
        since: &ScopeSince,
        reference: Option<u64>,
    ) -> Result<Reply, Refusal> {
        let (recovered, replays) = self.resume(since).await?;
        let answer = self.encode(&ServerFrame::Resumed {
            reference,
            recovered,
        });
        Ok(Reply {
            frames: answer.into_iter().collect(),
            replays,
            close: None,
            budget: None,
        })
    }

    /// Opens the user and `all` scopes' history after the offsets the client sent; returns what
    /// was recovered and the replays to stream after the answer.
    pub(in crate::session) async fn resume(
        &mut self,
        since: &ScopeSince,
    ) -> Result<(Recovered, Vec<Replaying>), BusError> {
        if since.user.is_some() || since.all.is_some() {
            self.rate.charge(SINCE_COST);
        }
        let mut recovered = Recovered::default();
        let mut replays = Vec::new();
        for (scope, since) in [(Scope::User, &since.user), (Scope::All, &since.all)] {
            let Some(since) = since else {
                continue;
            };
            let own = self.own.get(scope);
            // Complete: the connection holds the writing (nothing is written directly) while
            // it greets the client or acts on its frame.
            let (target, topic) = (own.key.clone(), own.topic);
            let written = self.outbox.written(topic);
            let cursor = self
                .shared
                .bus
                .open_replay(&target, since.parse().ok())
                .await?;
            match scope {
                Scope::User => recovered.user = cursor.recovered,
                _ => recovered.all = cursor.recovered,
            }
            replays.push(Replaying {
                target,
                topic,
                cursor,
                written,
            });
        }
        // Seams only once every history is open: a failed open answers UNAVAILABLE, and a seam
        // left behind would drop live messages that no replay brings.
        for replay in &replays {
            if let Some(last) = replay.cursor.last {
                self.seams.set(replay.topic, last);
            }
        }
        Ok((recovered, replays))
    }
}
