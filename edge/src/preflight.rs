//! What is checked before an edge starts: configuration it must refuse, and settings it serves
//! with but warns about. Refusals are errors here rather than surprises in production.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::{self, Config};
use crate::session::auth::{AuthConfigError, Verifier};

/// Refuses what must not run, warns about what should not, and builds the token verifier.
pub fn check(config: &Config, listeners: [&TcpListener; 2]) -> anyhow::Result<Verifier> {
    let addresses = [listeners[0].local_addr()?, listeners[1].local_addr()?];
    let (verifier, problems) = problems(config, addresses);
    match verifier {
        Some(verifier) if problems.is_empty() => {
            warn(config, &verifier);
            Ok(verifier)
        }
        _ => anyhow::bail!("{}", problems.join("\n")),
    }
}

/// Everything start-up would refuse in `config` for listeners on `addresses`, each problem
/// once (so `edge check-config` can list them all), and the token verifier when one can be
/// built.
pub fn problems(config: &Config, addresses: [SocketAddr; 2]) -> (Option<Verifier>, Vec<String>) {
    let mut problems = Problems::default();
    let verifier = verifier(config, addresses, &mut problems);
    // Echo mode answers anyone, authenticated or not: a conformance-test tool, never a service.
    if config.echo {
        let public = addresses[0];
        problems.ensure(public.ip().is_loopback(), || {
            format!(
                "--echo answers every connection without authentication: it listens on \
                 loopback only, not {public}"
            )
        });
    }
    problems.ensure(
        config.upstream_events.is_empty() || config.redis.is_configured(),
        || "--upstream-events needs --redis-url or --redis-cluster-nodes: workers read upstream messages from Redis".into(),
    );
    // The API publishes to everyone and disconnects anyone: its keys must not be guessable.
    if let Some(short) = config
        .api_keys
        .iter()
        .find(|k| k.len() < MIN_API_KEY_LEN && k.as_str() != config::DEV_API_KEY)
    {
        problems.add(format!(
            "an --api-key is {} bytes; at least {MIN_API_KEY_LEN} are required (e.g. `openssl rand -hex 24`)",
            short.len()
        ));
    }
    let dev = verifier.as_ref().is_some_and(|v| v.is_dev_secret);
    problems.ensure(
        !config.api_keys.iter().any(|k| k == config::DEV_API_KEY) || dev,
        || {
            format!(
                "--api-key {} is the published development key: choose your own",
                config::DEV_API_KEY
            )
        },
    );
    pending_caps(config, &mut problems);
    problems.ensure(
        config.redis.sentinel.sentinels.is_empty() || config.redis.cluster_nodes.is_empty(),
        || {
            "--redis-sentinels and --redis-cluster-nodes name two different Redis setups: give one"
                .into()
        },
    );
    hooks(config, &mut problems);
    problems.ensure(
        config.presence.presence_ttl >= std::time::Duration::from_secs(1),
        || "--presence-ttl must be at least 1s".into(),
    );
    problems.ensure(
        ferrocast_protocol::Keys::is_valid_prefix(&config.prefix),
        || "--prefix must be non-empty printable ASCII without braces".into(),
    );
    (verifier, problems.0)
}

/// The token verifier, or why there is none; and development mode kept to loopback.
fn verifier(
    config: &Config,
    addresses: [SocketAddr; 2],
    problems: &mut Problems,
) -> Option<Verifier> {
    // clap reads an empty environment variable as unset, which would quietly turn an empty
    // FERROCAST_JWT_SECRET into development mode: it is a configured secret, and too short.
    if config.jwt_secret.is_none()
        && std::env::var_os("FERROCAST_JWT_SECRET").is_some_and(|v| v.is_empty())
    {
        problems.add(AuthConfigError::WeakSecret(0).to_string());
        return None;
    }
    let verifier = match Verifier::from_config(config) {
        Ok(verifier) => verifier,
        Err(error) => {
            problems.add(error.to_string());
            return None;
        }
    };
    for address in addresses {
        problems.ensure(
            !verifier.is_dev_secret || address.ip().is_loopback(),
            || {
                format!(
                    "development mode (no JWT key configured) listens on loopback only, not {address}"
                )
            },
        );
    }
    Some(verifier)
}

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, problem: String) {
        self.0.push(problem);
    }

    fn ensure(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.add(problem());
        }
    }
}

/// Refuses a per-address cap on unauthenticated connections that would let one address take
/// every place under the edge's cap.
fn pending_caps(config: &Config, problems: &mut Problems) {
    let total = config.max_unauthenticated;
    match config.max_pending_per_ip {
        Some(0) => tracing::warn!(
            "--max-pending-per-ip 0: no per-address cap, so one address can hold every place \
             under --max-unauthenticated. Only behind a proxy whose address every connection shares."
        ),
        Some(per_ip) => problems.ensure(per_ip < total, || {
            format!(
                "--max-pending-per-ip {per_ip} must be below --max-unauthenticated {total}: one \
                 address must never hold every place (leave it unset for a quarter of it)"
            )
        }),
        None => {}
    }
    problems.ensure(total >= 2 || config.max_pending_per_ip == Some(0), || {
        "--max-unauthenticated must be at least 2, so one address cannot hold every place".into()
    });
}

/// Refuses hook settings that cannot work.
fn hooks(config: &Config, problems: &mut Problems) {
    let hooks = &config.hooks;
    for (flag, url) in [
        ("--connect-hook", &hooks.connect_hook),
        ("--join-hook", &hooks.join_hook),
    ] {
        if let Some(url) = url {
            let parsed: Result<hyper::Uri, _> = url.parse();
            problems.ensure(
                parsed.is_ok_and(|u| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
                }),
                || format!("{flag} must be an http:// or https:// URL, not {url:?}"),
            );
        }
    }
    problems.ensure(
        hooks.upstream_lifecycle.is_empty() || config.redis.is_configured(),
        || "--upstream-lifecycle needs --redis-url or --redis-cluster-nodes: workers read lifecycle events from the inbox in Redis".into(),
    );
    problems.ensure(!hooks.hook_timeout.is_zero(), || {
        "--hook-timeout must be more than 0".into()
    });
    if hooks.join_hook.is_some() && hooks.join_hook_rooms.is_empty() {
        tracing::warn!("--join-hook without --join-hook-rooms: no join will ever ask it");
    }
    // A hook trusts whoever presents the key: an empty or short one is no proof of an edge.
    if let Some(key) = &hooks.hook_key {
        problems.ensure(key.len() >= MIN_API_KEY_LEN, || {
            format!(
                "--hook-key is {} bytes; at least {MIN_API_KEY_LEN} are required (e.g. `openssl rand -hex 24`)",
                key.len()
            )
        });
    }
    if (hooks.connect_hook.is_some() || hooks.join_hook.is_some()) && hooks.hook_key.is_none() {
        tracing::warn!(
            "no --hook-key: hook requests are not signed, so a hook cannot tell the edges from anyone else"
        );
    }
    if hooks.connect_hook.is_some()
        && (config.jwt_secret.is_some() || config.jwt_public_key_file.is_some())
    {
        tracing::warn!("--connect-hook decides every authentication: the JWT flags are not used");
    }
}

/// Shortest API key accepted, in bytes.
const MIN_API_KEY_LEN: usize = 16;

/// Warns about what runs but should not in production.
pub fn warn(config: &Config, verifier: &Verifier) {
    if verifier.is_dev_secret && config.api_keys.is_empty() {
        tracing::warn!(
            "DEVELOPMENT MODE: the HTTP API on the internal listener takes the published key {:?}",
            config::DEV_API_KEY
        );
    }
    if !config.presence.presence_events.is_empty() && config.presence.presence_rooms.is_empty() {
        tracing::warn!(
            "--presence-events without --presence-rooms: no room records presence, so none is \
             told about joins and leaves"
        );
    }
    if verifier.is_dev_secret {
        tracing::warn!(
            "DEVELOPMENT MODE: no JWT key configured, so the published development secret {:?} \
             verifies tokens and anyone can mint them; listening on loopback only. Set \
             --jwt-secret (32+ bytes) or --jwt-public-key-file in production.",
            config::DEV_JWT_SECRET
        );
    }
    if config.jwt_public_key_file.is_some() && config.jwt_audience.is_none() {
        tracing::warn!(
            "no --jwt-audience: any token signed by this key gets in, including those your \
             identity provider issues for other applications. Set --jwt-audience."
        );
    }
    if config.echo {
        tracing::warn!(
            "ECHO MODE: the WebSocket endpoint echoes every message with no authentication. \
             For protocol conformance tests only."
        );
    }
    if !config.redis.is_configured() {
        tracing::warn!(
            "SINGLE-NODE MODE: no --redis-url, so messages travel on an in-process bus and only \
             clients of this edge see them. Set --redis-url to run several edges."
        );
    }
    if config.allowed_origins.is_empty() {
        tracing::warn!(
            "no --allowed-origins: pages on any site may open WebSockets to this edge. \
             List your front ends' origins in production."
        );
    }
}
