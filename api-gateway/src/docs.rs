//! The platform's API document: the gateway's own operations merged with every upstream's
//! `/openapi.json`, restricted to the paths clients reach through the gateway. Swagger UI at
//! `/docs` reads it; its assets are compiled in (nothing is fetched at build or run time).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use futures::future::join_all;
use serde_json::{Map, Value};
use utoipa::OpenApi;

use crate::health::Upstreams as Pools;
use platform_proxy::Proxy;

/// What the document needs: every pool, and a client to fetch with.
#[derive(Clone)]
pub struct Upstreams {
    pub pools: Pools,
    pub proxy: Proxy,
}

/// The gateway's own operations, documented.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "microservices-platform",
        description = "The platform's public API, through the API gateway."
    ),
    paths(crate::health::aggregate, crate::health::service)
)]
struct GatewayDoc;

/// Only edge paths are merged: a service's own `/health` or `/metrics` is not reachable here.
fn is_edge_path(path: &str) -> bool {
    path.starts_with("/api/")
}

/// Merges `doc`'s edge paths and its components into `base`.
fn merge(base: &mut Value, doc: &Value) {
    if let (Some(paths), Some(base_paths)) = (
        doc.get("paths").and_then(Value::as_object),
        base.get_mut("paths").and_then(Value::as_object_mut),
    ) {
        for (path, item) in paths.iter().filter(|(p, _)| is_edge_path(p)) {
            base_paths.insert(path.clone(), item.clone());
        }
    }
    if let Some(components) = doc.get("components").and_then(Value::as_object) {
        let base_components = base.as_object_mut().map(|b| {
            b.entry("components")
                .or_insert_with(|| Value::Object(Map::new()))
        });
        if let Some(Value::Object(base_components)) = base_components {
            for (kind, entries) in components {
                let slot = base_components
                    .entry(kind.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let (Value::Object(slot), Value::Object(entries)) = (slot, entries) {
                    for (name, entry) in entries {
                        slot.insert(name.clone(), entry.clone());
                    }
                }
            }
        }
    }
    if let Some(tags) = doc.get("tags").and_then(Value::as_array) {
        let base_tags = base
            .as_object_mut()
            .map(|b| b.entry("tags").or_insert_with(|| Value::Array(Vec::new())));
        if let Some(Value::Array(base_tags)) = base_tags {
            for tag in tags {
                if !base_tags.iter().any(|t| t.get("name") == tag.get("name")) {
                    base_tags.push(tag.clone());
                }
            }
        }
    }
}

/// The merged document. An upstream that is down is left out (and logged), not an error.
async fn openapi(State(upstreams): State<Upstreams>) -> Json<Value> {
    let mut base = GatewayDoc::openapi();
    // The gateway's own /health replaces the generic liveness document.
    let mut operations = platform_http::router::OperationsDoc::openapi();
    operations.paths.paths.remove("/health");
    base.merge(operations);
    let mut document = serde_json::to_value(&base).unwrap_or(Value::Null);
    let fetches = upstreams
        .pools
        .0
        .values()
        .filter_map(|pool| pool.pick(None))
        .map(|endpoint| {
            let proxy = upstreams.proxy.clone();
            async move {
                (
                    endpoint.upstream.service.clone(),
                    proxy.fetch(&endpoint.upstream, "/openapi.json").await,
                )
            }
        });

    for (service, fetched) in join_all(fetches).await {
        match fetched {
            Ok((status, body)) if status.is_success() => {
                match serde_json::from_slice::<Value>(&body) {
                    Ok(doc) => merge(&mut document, &doc),
                    Err(error) => tracing::warn!(%service, %error, "invalid OpenAPI document"),
                }
            }
            Ok((status, _)) => tracing::warn!(%service, %status, "OpenAPI document unavailable"),
            Err(error) => tracing::warn!(%service, %error, "OpenAPI document unavailable"),
        }
    }
    edge_statuses(&mut document);
    Json(document)
}

/// What the gateway itself can answer on any edge operation, besides what the service does.
fn edge_statuses(document: &mut Value) {
    use platform_http::contract::ensure;
    for (path, operation) in platform_http::contract::operations_mut(document) {
        if !is_edge_path(&path) {
            continue;
        }
        ensure(
            operation,
            429,
            "Rate limit reached for the client or user; see `Retry-After`",
        );
        ensure(
            operation,
            502,
            "The service answered with something that is not HTTP",
        );
        ensure(
            operation,
            503,
            "The service is unavailable (no healthy instance, or its circuit breaker is open)",
        );
        ensure(operation, 504, "The service did not answer in time");
    }
}

/// `/openapi.json` and `/docs`.
pub fn router(upstreams: Upstreams) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .with_state(upstreams)
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs")
                .config(utoipa_swagger_ui::Config::new(["/openapi.json"])),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_edge_paths_and_all_components_are_merged() {
        let mut base = json!({"paths": {"/health": {}}, "components": {"schemas": {"A": {}}}});
        let upstream = json!({
            "paths": {"/api/v1/users": {"get": {}}, "/metrics": {"get": {}}},
            "components": {"schemas": {"User": {}}, "securitySchemes": {"bearer": {}}},
            "tags": [{"name": "users"}]
        });
        merge(&mut base, &upstream);
        assert!(base["paths"]["/api/v1/users"].is_object());
        assert!(base["paths"].get("/metrics").is_none());
        assert!(base["components"]["schemas"]["A"].is_object());
        assert!(base["components"]["schemas"]["User"].is_object());
        assert!(base["components"]["securitySchemes"]["bearer"].is_object());
        assert_eq!(base["tags"][0]["name"], "users");
    }

    #[test]
    fn edge_operations_document_what_the_gateway_answers_itself() {
        let mut document = json!({"paths": {
            "/api/v1/users": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/health": {"get": {"responses": {"200": {"description": "ok"}}}}
        }});
        edge_statuses(&mut document);
        let statuses: Vec<&String> = document["paths"]["/api/v1/users"]["get"]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(statuses, ["200", "429", "502", "503", "504"]);
        assert_eq!(
            document["paths"]["/health"]["get"]["responses"]
                .as_object()
                .unwrap()
                .len(),
            1
        );
    }
}
