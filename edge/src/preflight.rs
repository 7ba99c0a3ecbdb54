//! What is checked before an edge starts: configuration it must refuse, and settings it serves
//! with but warns about. Refusals are errors here rather than surprises in production.

use tokio::net::TcpListener;

use crate::config::{self, Config};
use crate::session::auth::{AuthConfigError, Verifier};

/// Refuses what must not run, warns about what should not, and builds the token verifier.
pub fn check(config: &Config, listeners: [&TcpListener; 2]) -> anyhow::Result<Verifier> {
    // clap reads an empty environment variable as unset, which would quietly turn an empty
    // FERROCAST_JWT_SECRET into development mode: it is a configured secret, and too short.
    if config.jwt_secret.is_none()
        && std::env::var_os("FERROCAST_JWT_SECRET").is_some_and(|v| v.is_empty())
    {
        return Err(AuthConfigError::WeakSecret(0).into());
    }
    let verifier = Verifier::from_config(config)?;
    for listener in listeners {
        let address = listener.local_addr()?;
        anyhow::ensure!(
            !verifier.is_dev_secret || address.ip().is_loopback(),
            "development mode (no JWT key configured) listens on loopback only, not {address}"
        );
    }
    // Echo mode answers anyone, authenticated or not: a conformance-test tool, never a service.
    if config.echo {
        let public = listeners[0].local_addr()?;
        anyhow::ensure!(
            public.ip().is_loopback(),
            "--echo answers every connection without authentication: it listens on loopback \
             only, not {public}"
        );
    }
    if !config.upstream_events.is_empty() && !config.redis.is_configured() {
        anyhow::bail!(
            "--upstream-events needs --redis-url or --redis-cluster-nodes: workers read upstream messages from Redis"
        );
    }
    // The API publishes to everyone and disconnects anyone: its keys must not be guessable.
    if let Some(short) = config
        .api_keys
        .iter()
        .find(|k| k.len() < MIN_API_KEY_LEN && k.as_str() != config::DEV_API_KEY)
    {
        anyhow::bail!(
            "an --api-key is {} bytes; at least {MIN_API_KEY_LEN} are required (e.g. `openssl rand -hex 24`)",
            short.len()
        );
    }
    if config.api_keys.iter().any(|k| k == config::DEV_API_KEY) && !verifier.is_dev_secret {
        anyhow::bail!(
            "--api-key {} is the published development key: choose your own",
            config::DEV_API_KEY
        );
    }
    pending_caps(config)?;
    anyhow::ensure!(
        config.redis.sentinel.sentinels.is_empty() || config.redis.cluster_nodes.is_empty(),
        "--redis-sentinels and --redis-cluster-nodes name two different Redis setups: give one"
    );
    hooks(config)?;
    if config.presence.presence_ttl < std::time::Duration::from_secs(1) {
        anyhow::bail!("--presence-ttl must be at least 1s");
    }
    if !ferrocast_protocol::Keys::is_valid_prefix(&config.prefix) {
        anyhow::bail!("--prefix must be non-empty printable ASCII without braces");
    }
    warn(config, &verifier);
    Ok(verifier)
}

/// Refuses a per-address cap on unauthenticated connections that would let one address take
/// every place under the edge's cap.
fn pending_caps(config: &Config) -> anyhow::Result<()> {
    let total = config.max_unauthenticated;
    match config.max_pending_per_ip {
        Some(0) => tracing::warn!(
            "--max-pending-per-ip 0: no per-address cap, so one address can hold every place              under --max-unauthenticated. Only behind a proxy whose address every connection shares."
        ),
        Some(per_ip) => anyhow::ensure!(
            per_ip < total,
            "--max-pending-per-ip {per_ip} must be below --max-unauthenticated {total}: one              address must never hold every place (leave it unset for a quarter of it)"
        ),
        None => {}
    }
    anyhow::ensure!(
        total >= 2 || config.max_pending_per_ip == Some(0),
        "--max-unauthenticated must be at least 2, so one address cannot hold every place"
    );
    Ok(())
}

/// Refuses hook settings that cannot work.
fn hooks(config: &Config) -> anyhow::Result<()> {
    let hooks = &config.hooks;
    for (flag, url) in [
        ("--connect-hook", &hooks.connect_hook),
        ("--join-hook", &hooks.join_hook),
    ] {
        if let Some(url) = url {
            let parsed: Result<hyper::Uri, _> = url.parse();
            anyhow::ensure!(
                parsed.is_ok_and(|u| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
                }),
                "{flag} must be an http:// or https:// URL, not {url:?}"
            );
        }
    }
    if !hooks.upstream_lifecycle.is_empty() && !config.redis.is_configured() {
        anyhow::bail!(
            "--upstream-lifecycle needs --redis-url or --redis-cluster-nodes: workers read lifecycle events from the inbox in Redis"
        );
    }
    anyhow::ensure!(
        !hooks.hook_timeout.is_zero(),
        "--hook-timeout must be more than 0"
    );
    if hooks.join_hook.is_some() && hooks.join_hook_rooms.is_empty() {
        tracing::warn!("--join-hook without --join-hook-rooms: no join will ever ask it");
    }
    // A hook trusts whoever presents the key: an empty or short one is no proof of an edge.
    if let Some(key) = &hooks.hook_key {
        anyhow::ensure!(
            key.len() >= MIN_API_KEY_LEN,
            "--hook-key is {} bytes; at least {MIN_API_KEY_LEN} are required (e.g. `openssl rand -hex 24`)",
            key.len()
        );
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
    Ok(())
}

/// Shortest API key accepted, in bytes.
const MIN_API_KEY_LEN: usize = 16;

fn warn(config: &Config, verifier: &Verifier) {
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
