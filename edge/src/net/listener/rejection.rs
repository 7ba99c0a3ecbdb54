//! A refused upgrade as one value: the HTTP answer and the metric it counts in, as axum's
//! rejections carry their response. Each refusal is written where its check is, and answered by
//! [`Rejection::answer`] alone, so no refusal can be counted one way and answered another.

use std::borrow::Cow;

use tokio::net::TcpStream;

use crate::net::http;
use crate::ops::metrics::{ReasonLabel, metrics};
use crate::session::connections::PendingRefusal;

/// The counter a refusal counts in, under its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    /// `refused`: turned away by the edge before the upgrade (drain, origin, limits).
    Refused(&'static str),
    /// `auth_failures`: the `Authorization` header's token did not get the connection in.
    AuthFailure(&'static str),
}

/// Why an upgrade was refused: the answer's status, extra headers and body, and the metric it
/// counts in.
#[derive(Debug)]
pub(super) struct Rejection {
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    body: Cow<'static, str>,
    /// `None` for a request that is no handshake this edge takes: the client's mistake, which no
    /// counter of the edge's refusals should show.
    counter: Option<Counter>,
}

impl Rejection {
    /// A request that is no handshake this edge takes; counted nowhere.
    pub(super) fn bad(status: u16, body: &'static str) -> Rejection {
        Rejection {
            status,
            headers: &[],
            body: Cow::Borrowed(body),
            counter: None,
        }
    }

    /// A handshake the edge turns away, counted in `refused` under `reason`.
    pub(super) fn refused(status: u16, reason: &'static str, body: &'static str) -> Rejection {
        Rejection {
            counter: Some(Counter::Refused(reason)),
            ..Rejection::bad(status, body)
        }
    }

    /// A token refused: 401, asking for a Bearer token; counted in `auth_failures` under `label`.
    pub(super) fn unauthorized(
        label: &'static str,
        body: impl Into<Cow<'static, str>>,
    ) -> Rejection {
        Rejection {
            status: 401,
            headers: &[("www-authenticate", "Bearer")],
            body: body.into(),
            counter: Some(Counter::AuthFailure(label)),
        }
    }

    /// The connect hook gave no answer: 503, to retry in 5 s (the back end's outage, not the
    /// token's fault); counted in `auth_failures`.
    pub(super) fn auth_unavailable() -> Rejection {
        Rejection {
            status: 503,
            headers: &[("retry-after", "5")],
            body: Cow::Borrowed("authentication unavailable; try again later"),
            counter: Some(Counter::AuthFailure("hook_unavailable")),
        }
    }

    /// The same rejection, answered with `headers` too.
    pub(super) fn with_headers(
        self,
        headers: &'static [(&'static str, &'static str)],
    ) -> Rejection {
        Rejection { headers, ..self }
    }

    /// Counts the rejection in its metric, then answers it and closes the connection.
    pub(super) async fn answer(self, stream: &mut TcpStream) {
        if let Some(counter) = self.counter {
            let m = metrics();
            let (family, reason) = match counter {
                Counter::Refused(reason) => (&m.refused, reason),
                Counter::AuthFailure(reason) => (&m.auth_failures, reason),
            };
            family.get_or_create(&ReasonLabel { reason }).inc();
        }
        http::respond(stream, self.status, self.headers, &self.body).await;
    }
}

/// A connection over a cap on connections not yet authenticated.
impl From<PendingRefusal> for Rejection {
    fn from(refusal: PendingRefusal) -> Rejection {
        let reason = match refusal {
            PendingRefusal::Total => "unauthenticated_limit",
            PendingRefusal::PerIp => "pending_per_ip_limit",
        };
        Rejection::refused(503, reason, "too many pending connections")
    }
}

/// A step's outcome, its rejection answered.
pub(super) trait OrAnswer<T> {
    /// The value, or `None` once the rejection is counted and answered on `stream`.
    async fn or_answer(self, stream: &mut TcpStream) -> Option<T>;
}

impl<T> OrAnswer<T> for Result<T, Rejection> {
    async fn or_answer(self, stream: &mut TcpStream) -> Option<T> {
        match self {
            Ok(value) => Some(value),
            Err(rejection) => {
                rejection.answer(stream).await;
                None
            }
        }
    }
}
