//! A back-end hook server of the test's own (axum, in the test process): it authenticates opaque
//! tokens from a table, decides joins from another, and can be made slow or failing, so tests
//! drive an edge's hooks against a real HTTP server.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// How the hook answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As its tables say.
    Normal,
    /// After sleeping this long.
    Slow(Duration),
    /// 500 to everything.
    Failing,
}

/// One request the server saw: path, `Authorization`, `traceparent`, body.
pub type Seen = (String, Option<String>, Option<String>, Value);

/// What the server knows and saw.
pub struct HookState {
    /// How it answers now.
    pub mode: Mutex<Mode>,
    /// Opaque token → the claims to answer.
    pub tokens: Mutex<HashMap<String, Value>>,
    /// (user, room) pairs the join hook allows.
    pub members: Mutex<HashSet<(String, String)>>,
    /// Every request: path, its Authorization header and traceparent, and its body.
    pub seen: Mutex<Vec<Seen>>,
    /// Tokens the connect hook never answers (it holds the request until the edge gives up).
    pub hang: Mutex<HashSet<String>>,
    /// When set, an accepting connect hook first publishes a `greeting` to the new client id
    /// through this emitter, as an application sending a connection its initial state would.
    pub greeter: Mutex<Option<ferrocast_emitter::Emitter>>,
}

/// A running hook server; stops when dropped.
pub struct HookServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its tables and what it saw.
    pub state: Arc<HookState>,
    task: tokio::task::JoinHandle<()>,
    /// `http` or `https`.
    scheme: &'static str,
}

impl HookServer {
    /// Starts a server answering `/connect` and `/join`.
    pub async fn start() -> HookServer {
        let (state, router) = HookServer::routes();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind hook server");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        HookServer {
            port,
            state,
            task,
            scheme: "http",
        }
    }

    /// Like [`HookServer::start`], over TLS with the server certificate of `certs` (for
    /// `localhost`): its URLs are `https://localhost:…`.
    pub async fn start_tls(certs: &crate::certs::Certs) -> HookServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (state, router) = HookServer::routes();
        let chain = CertificateDer::pem_file_iter(&certs.server_cert)
            .expect("server certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("server certificate");
        let key = PrivateKeyDer::from_pem_file(&certs.server_key).expect("server key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind hook server");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HookServer {
            port,
            state,
            task,
            scheme: "https",
        }
    }

    fn routes() -> (Arc<HookState>, axum::Router) {
        let state = Arc::new(HookState {
            mode: Mutex::new(Mode::Normal),
            tokens: Mutex::new(HashMap::new()),
            members: Mutex::new(HashSet::new()),
            seen: Mutex::new(Vec::new()),
            hang: Mutex::new(HashSet::new()),
            greeter: Mutex::new(None),
        });
        let router = axum::Router::new()
            .route("/connect", post(connect))
            .route("/join", post(join))
            .with_state(state.clone());
        (state, router)
    }

    /// The URL of `path` (`/connect`, `/join`).
    pub fn url(&self, path: &str) -> String {
        match self.scheme {
            "https" => format!("https://localhost:{}{path}", self.port),
            _ => format!("http://127.0.0.1:{}{path}", self.port),
        }
    }

    /// Answers `token` with `claims`.
    pub fn token(&self, token: &str, claims: Value) {
        self.state.tokens.lock().insert(token.to_owned(), claims);
    }

    /// Makes the connect hook hold every request for `token` without answering.
    pub fn hang_on(&self, token: &str) {
        self.state.hang.lock().insert(token.to_owned());
    }

    /// Makes the connect hook publish a `greeting` (`{"client": <id>}`) to every client it
    /// accepts, through `emitter`, before it answers.
    pub fn greet_with(&self, emitter: ferrocast_emitter::Emitter) {
        *self.state.greeter.lock() = Some(emitter);
    }

    /// Lets `user` into `room`.
    pub fn member(&self, user: &str, room: &str) {
        self.state
            .members
            .lock()
            .insert((user.to_owned(), room.to_owned()));
    }

    /// Changes how it answers.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock() = mode;
    }

    /// The bodies of the requests to `path` so far.
    pub fn requests(&self, path: &str) -> Vec<(Option<String>, Option<String>, Value)> {
        self.state
            .seen
            .lock()
            .iter()
            .filter(|(p, ..)| p == path)
            .map(|(_, auth, trace, body)| (auth.clone(), trace.clone(), body.clone()))
            .collect()
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        // Aborting the accept loop leaves the tasks of connections already open (an edge's
        // pooled keep-alive) running: they must not go on answering as if the server were up.
        self.set_mode(Mode::Failing);
        self.task.abort();
    }
}

/// Records the request and applies the mode: `Some` is the answer to give instead.
async fn enter(
    state: &HookState,
    path: &str,
    headers: &HeaderMap,
    body: &Value,
) -> Option<Response> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    state.seen.lock().push((
        path.to_owned(),
        header("authorization"),
        header("traceparent"),
        body.clone(),
    ));
    let mode = *state.mode.lock();
    match mode {
        Mode::Normal => None,
        Mode::Slow(pause) => {
            tokio::time::sleep(pause).await;
            None
        }
        Mode::Failing => Some(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

async fn connect(
    State(state): State<Arc<HookState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(answer) = enter(&state, "/connect", &headers, &body).await {
        return answer;
    }
    let token = body["token"].as_str().unwrap_or_default();
    if state.hang.lock().contains(token) {
        tokio::time::sleep(Duration::from_secs(60)).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    }
    let Some(claims) = state.tokens.lock().get(token).cloned() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let greeter = state.greeter.lock().clone();
    if let Some(emitter) = greeter {
        let client = body["client"].as_str().unwrap_or_default();
        let greeting = json!({ "client": client });
        if let Err(e) = emitter.to_client(client).emit("greeting", &greeting).await {
            return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
        }
    }
    Json(claims).into_response()
}

async fn join(
    State(state): State<Arc<HookState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(answer) = enter(&state, "/join", &headers, &body).await {
        return answer;
    }
    let pair = (
        body["user"].as_str().unwrap_or_default().to_owned(),
        body["room"].as_str().unwrap_or_default().to_owned(),
    );
    if state.members.lock().contains(&pair) {
        Json(json!({"allow": true})).into_response()
    } else {
        Json(json!({"allow": false, "reason": "not a member of this project"})).into_response()
    }
}
