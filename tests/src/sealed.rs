//! A test client's half of payload encryption (PROTOCOL.md part E): the edge crate's Rust
//! client half, with panics for tests. (The Python client, tests/python/encrypted_client.py,
//! checks the same contract with another library.)

use ferrocast_edge::encryption::client;
use serde_json::Value;

/// A client's key pair, and its channel once agreed.
#[derive(Default)]
pub struct ClientKeys(client::ClientKeys);

impl ClientKeys {
    /// A fresh key pair.
    pub fn new() -> ClientKeys {
        ClientKeys(client::ClientKeys::new())
    }

    /// The public key as `encrypt.key` carries it.
    pub fn offer(&self) -> String {
        self.0.offer()
    }

    /// Derives the channel's key from the edge's `{"key","salt"}`.
    pub fn agree(&mut self, hello: &Value) {
        let field = |name: &str| hello[name].as_str().expect("a string").to_owned();
        self.0.agree(&field("key"), &field("salt")).expect("agreed");
    }

    /// The `enc` payload carrying `plain` as the next frame to the edge.
    pub fn seal(&mut self, plain: &[u8], msgpack: bool) -> Vec<u8> {
        self.0.seal(plain, msgpack).expect("sealed")
    }

    /// What an `enc` frame from the edge carries; panics unless it is next and decrypts.
    pub fn open(&mut self, payload: &[u8], msgpack: bool) -> Vec<u8> {
        self.0.open(payload, msgpack).expect("opened")
    }
}
