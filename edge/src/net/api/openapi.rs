//! `GET /api/openapi.json`: the API's OpenAPI 3.1 description, written by hand in
//! `openapi.json` beside this file and served as written.
//!
//! It is kept true by tests rather than generated: the unit tests below hold its paths to
//! [`ROUTES`](super::ROUTES), and tests/tests/openapi.rs calls every route against a real edge
//! and checks each answer against it (and lets schemathesis fuzz the edge from it).

use axum::http::header;
use axum::response::IntoResponse;

/// The OpenAPI 3.1 document of the HTTP API, as served.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /api/openapi.json`.
pub(super) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::OPENAPI;
    use crate::net::api::ROUTES;

    fn document() -> Value {
        serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut operations = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                operations.push((method.clone(), path.clone(), operation.clone()));
            }
        }
        operations
    }

    #[test]
    fn the_document_has_exactly_the_routes_the_router_serves() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let documented: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(method, path, _)| (method, path))
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn keyed_routes_and_only_they_need_a_key() {
        let doc = document();
        assert_eq!(
            doc["security"],
            serde_json::json!([{"bearer": []}, {"apiKey": []}])
        );
        for route in ROUTES {
            let operation = &doc["paths"][route.path][route.method.as_str()];
            let open = operation["security"] == serde_json::json!([]);
            assert_eq!(open, !route.keyed, "{}", route.path);
            let statuses = operation["responses"].as_object().expect("responses");
            // Every route answers 404 while the API is off, and 503 when no place is free.
            let mut must = vec!["200", "404", "503"];
            if route.keyed {
                must.push("401");
            }
            for status in must {
                assert!(statuses.contains_key(status), "{} {status}", route.path);
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(doc: &Value, value: &Value) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        let pointer = target.strip_prefix('#').expect("a local $ref");
                        assert!(doc.pointer(pointer).is_some(), "{target} resolves");
                    }
                    map.values().for_each(|v| walk(doc, v));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(doc, v)),
                _ => {}
            }
        }
        let doc = document();
        walk(&doc, &doc);
    }
}
