//! The statuses every operation can answer besides its own, added to a service's OpenAPI
//! document in one place, so that no handler's annotation can forget them: the kit answers
//! them before (or around) any handler runs.
//!
//! - an operation that takes a bearer token: 401 (missing, invalid, expired or revoked), and 403
//!   under `/api/v1/admin/` (not an administrator);
//! - an operation with parameters: 400 (one that does not parse) and 422 (one that parses but
//!   is invalid);
//! - an operation with a body: 400 (malformed JSON), 413 (too large), 415 (not JSON) and 422;
//! - every operation: 503 (the request ran past the service's timeout, the service is shedding
//!   load, or a dependency it needs is down).
//!
//! Optional query parameters are marked `allowEmptyValue`: the kit reads `?status=` as if
//! `status` were absent, on every endpoint.
//!
//! The gateway adds its own (rate limits, upstream failures) when it merges the documents.
//!
//! [`Documented`] keeps the result honest from the other side: the pipeline checks every answer
//! of a documented operation against the statuses its document lists, logs an error for one
//! that is not there, and in debug builds marks it with [`UNDOCUMENTED_STATUS`], which the
//! shared test helpers (`platform_testing::http`) refuse. So every integration test that looks
//! at an answer fails when a handler returns a status its annotation does not list.

use std::collections::{HashMap, HashSet};

use axum::http::{HeaderName, Method, StatusCode};
use serde_json::{Map, Value, json};

/// Set (in debug builds) on an answer whose status its operation does not document.
pub static UNDOCUMENTED_STATUS: HeaderName = HeaderName::from_static("x-undocumented-status");

/// The methods an OpenAPI path item can hold operations under.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation of `document` with its path.
pub fn operations_mut(document: &mut Value) -> impl Iterator<Item = (String, &mut Value)> {
    document
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.iter_mut())
        .flat_map(|(path, item)| {
            let path = path.clone();
            item.as_object_mut()
                .into_iter()
                .flat_map(|item| item.iter_mut())
                .filter(|(method, _)| METHODS.contains(&method.as_str()))
                .map(move |(_, operation)| (path.clone(), operation))
        })
}

/// Documents `status` on `operation` as a problem document, unless the operation already says
/// what it means there.
pub fn ensure(operation: &mut Value, status: u16, description: &str) {
    let Some(operation) = operation.as_object_mut() else {
        return;
    };
    let responses = operation
        .entry("responses")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(responses) = responses.as_object_mut() {
        responses.entry(status.to_string()).or_insert_with(|| {
            json!({
                "description": description,
                "content": {
                    "application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}
                    }
                }
            })
        });
    }
}

/// Whether `operation` requires a bearer token (an empty requirement, `{}`, makes it optional).
pub fn requires_token(operation: &Value) -> bool {
    operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|requirements| {
            !requirements.is_empty()
                && requirements
                    .iter()
                    .all(|r| r.as_object().is_some_and(|r| !r.is_empty()))
        })
}

/// Adds the kit's statuses to every operation of `service`'s `document`, and the `Problem`
/// schema they refer to; makes each `operationId` unique across the platform (`get` becomes
/// `order_get`: the gateway merges every service's document into one, where ids must not
/// repeat); and links create operations to what reads their result.
pub fn complete(document: &mut Value, service: &str) {
    let prefix = service
        .strip_suffix("-service")
        .unwrap_or(service)
        .replace('-', "_");
    for (_, operation) in operations_mut(document) {
        if let Some(id) = operation.get_mut("operationId")
            && let Some(name) = id.as_str()
            && !name.starts_with(&format!("{prefix}_"))
        {
            *id = Value::String(format!("{prefix}_{name}"));
        }
    }
    for (path, operation) in operations_mut(document) {
        if !path.starts_with("/api/") {
            continue;
        }
        if requires_token(operation) {
            ensure(
                operation,
                401,
                "Missing, malformed, expired or revoked access token",
            );
            if path.starts_with("/api/v1/admin/") {
                ensure(operation, 403, "The caller is not an administrator");
            }
        }
        let has_parameters = operation
            .get("parameters")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty());
        for parameter in operation
            .get_mut("parameters")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let optional_query =
                parameter["in"] == "query" && !parameter["required"].as_bool().unwrap_or(false);
            if optional_query && let Some(parameter) = parameter.as_object_mut() {
                parameter.insert("allowEmptyValue".to_owned(), Value::Bool(true));
            }
            // A header is text or absent, never `null` (what an `Option` type says).
            if parameter["in"] == "header"
                && let Some(types) = parameter
                    .get_mut("schema")
                    .and_then(|s| s.get_mut("type"))
                    .and_then(Value::as_array_mut)
            {
                types.retain(|t| t != "null");
            }
        }
        if has_parameters {
            ensure(
                operation,
                400,
                "A parameter (path, query or header) does not parse",
            );
            ensure(operation, 422, "A parameter is invalid");
        }
        if operation.get("requestBody").is_some() {
            ensure(operation, 400, "The body is not well-formed JSON");
            ensure(
                operation,
                413,
                "The body is larger than the service accepts",
            );
            ensure(operation, 415, "The body is not `application/json`");
            ensure(operation, 422, "A field of the body is invalid");
        }
        ensure(
            operation,
            503,
            "Timed out, overloaded, or a dependency is unavailable; retry later",
        );
    }
    add_links(document);
    let schemas = document
        .as_object_mut()
        .map(|d| d.entry("components").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .map(|c| c.entry("schemas").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut);
    if let Some(schemas) = schemas
        && !schemas.contains_key("Problem")
    {
        let schema = <crate::Problem as utoipa::PartialSchema>::schema();
        if let Ok(schema) = serde_json::to_value(schema) {
            schemas.insert("Problem".to_owned(), schema);
        }
    }
}

/// Links each create operation (a `POST` answering 201) to the operations that take the new
/// resource's `id` as their first path parameter: `POST /api/v1/orders` to
/// `GET /api/v1/orders/{id}`, `POST /api/v1/orders/{id}/cancel`, … Paths under `/api/v1/admin/`
/// and the public ones name the same resources (`POST /api/v1/admin/products` creates what
/// `GET /api/v1/products/{id}` reads). Clients and stateful testers follow them.
fn add_links(document: &mut Value) {
    let mut targets: Vec<(String, String, String)> = Vec::new(); // (resource, parameter, operationId)
    for (path, operation) in operations_mut(document) {
        let Some(id) = operation.get("operationId").and_then(Value::as_str) else {
            continue;
        };
        let Some(start) = path.find("/{") else {
            continue;
        };
        let Some(end) = path[start..].find('}') else {
            continue;
        };
        let parameter = path[start + 2..start + end].to_owned();
        targets.push((resource(&path[..start]), parameter, id.to_owned()));
    }
    for (path, operation) in operations_mut(document) {
        let Some(created) = operation
            .get_mut("responses")
            .and_then(|r| r.get_mut("201"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let resource = resource(&path);
        let links: Map<String, Value> = targets
            .iter()
            .filter(|(r, _, _)| *r == resource)
            .map(|(_, parameter, id)| {
                let parameters = json!({ parameter.as_str(): "$response.body#/id" });
                (
                    id.clone(),
                    json!({"operationId": id, "parameters": parameters}),
                )
            })
            .collect();
        if !links.is_empty() {
            created.insert("links".to_owned(), Value::Object(links));
        }
    }
}

/// The resource a collection path names, whether under `/api/v1/admin/` or not.
fn resource(collection: &str) -> String {
    collection.replacen("/api/v1/admin/", "/api/v1/", 1)
}

/// A string schema that takes exactly `values` (for `#[param(schema_with = …)]` and
/// `#[schema(schema_with = …)]`), built from the type's own list so the document cannot drift
/// from what the code accepts.
pub fn string_enum<'a>(values: impl IntoIterator<Item = &'a str>) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values))
        .build()
}

/// A schema written as JSON Schema, for what the derive cannot say (`oneOf` of exact
/// shapes, fields that go together). Malformed input is a programming error caught by the
/// service's document tests; it degrades to an unconstrained object rather than panicking.
pub fn json_schema(value: Value) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    serde_json::from_value(value).unwrap_or_else(|error| {
        tracing::error!(%error, "a hand-written schema does not parse");
        utoipa::openapi::ObjectBuilder::new().build().into()
    })
}

/// The statuses each operation of a document lists, by method and path template.
#[derive(Debug, Default)]
pub struct Documented {
    /// By path template, then method; `None`: the operation has a `default` response, so any
    /// status is documented. Keyed by path first so a lookup borrows the route (no allocation
    /// per request).
    operations: HashMap<String, HashMap<Method, Option<HashSet<u16>>>>,
}

impl Documented {
    /// Reads the `responses` of every operation under `paths` of an OpenAPI document (as
    /// JSON); anything that is not an operation is skipped, never an error.
    pub fn from_document(document: &Value) -> Self {
        let mut operations: HashMap<String, HashMap<Method, Option<HashSet<u16>>>> = HashMap::new();
        let paths = document.get("paths").and_then(Value::as_object);
        for (path, item) in paths.into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                if !METHODS.contains(&method.as_str()) {
                    continue;
                }
                let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                    continue;
                };
                let responses = operation.get("responses").and_then(Value::as_object);
                let statuses = if responses.is_some_and(|r| r.contains_key("default")) {
                    None
                } else {
                    Some(
                        responses
                            .into_iter()
                            .flat_map(|r| r.keys())
                            .filter_map(|status| status.parse().ok())
                            .collect(),
                    )
                };
                operations
                    .entry(path.clone())
                    .or_default()
                    .insert(method, statuses);
            }
        }
        Self { operations }
    }

    /// Whether `status` is documented for `method` on the route `route` (a path template, as
    /// axum's `MatchedPath` gives it). Routes the document does not describe are not judged.
    pub fn allows(&self, method: &Method, route: &str, status: StatusCode) -> bool {
        // A HEAD request runs the GET handler.
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        match self.operations.get(route).and_then(|item| item.get(method)) {
            Some(Some(statuses)) => statuses.contains(&status.as_u16()),
            Some(None) | None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_operations_link_to_the_reads_of_what_they_create() {
        let op = |id: &str, created: bool| {
            let status = if created { "201" } else { "200" };
            json!({"operationId": id, "responses": {status: {"description": "x"}}})
        };
        let mut doc = json!({"paths": {
            "/api/v1/admin/products": {"post": op("create_product", true)},
            "/api/v1/products": {"get": op("list_products", false)},
            "/api/v1/products/{id}": {"get": op("get_product", false)},
            "/api/v1/admin/products/{id}/inventory": {"put": op("set_inventory", false)},
            "/api/v1/orders/{id}": {"get": op("get_order", false)},
            "/api/v1/auth/login": {"post": op("login", false)}
        }});
        complete(&mut doc, "thing-service");
        let links = &doc["paths"]["/api/v1/admin/products"]["post"]["responses"]["201"]["links"];
        let mut names: Vec<&String> = links.as_object().unwrap().keys().collect();
        names.sort();
        assert_eq!(names, ["thing_get_product", "thing_set_inventory"]);
        assert_eq!(
            links["thing_get_product"],
            json!({"operationId": "thing_get_product", "parameters": {"id": "$response.body#/id"}})
        );
        assert!(doc["paths"]["/api/v1/auth/login"]["post"]["responses"]["200"]["links"].is_null());
    }

    #[test]
    fn an_answer_is_judged_against_its_operation() {
        let mut doc = document();
        complete(&mut doc, "thing-service");
        doc["paths"]["/api/v1/any"] = json!({"get": {"responses": {"default": {}}}});
        let documented = Documented::from_document(&doc);
        let things = "/api/v1/things";
        assert!(documented.allows(&Method::GET, things, StatusCode::OK));
        assert!(documented.allows(&Method::HEAD, things, StatusCode::OK));
        assert!(
            documented.allows(&Method::GET, things, StatusCode::UNAUTHORIZED),
            "added by complete()"
        );
        assert!(!documented.allows(&Method::GET, things, StatusCode::NOT_FOUND));
        assert!(!documented.allows(&Method::GET, things, StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!documented.allows(&Method::POST, things, StatusCode::OK));
        assert!(documented.allows(&Method::POST, things, StatusCode::CREATED));
        assert!(
            documented.allows(&Method::PUT, things, StatusCode::NOT_FOUND),
            "no such operation: not judged (the router answers 405)"
        );
        assert!(documented.allows(&Method::GET, "/api/v1/any", StatusCode::IM_A_TEAPOT));
        assert!(documented.allows(&Method::GET, "/openapi.json", StatusCode::OK));
    }

    fn document() -> Value {
        json!({
            "paths": {
                "/api/v1/things": {
                    "get": {"responses": {"200": {"description": "ok"}}, "security": [{"bearer": []}],
                            "parameters": [{"name": "page", "in": "query"},
                                           {"name": "q", "in": "query", "required": true},
                                           {"name": "id", "in": "path", "required": true}]},
                    "post": {"responses": {"201": {"description": "made"}, "422": {"description": "own words"}},
                             "requestBody": {"content": {}}}
                },
                "/api/v1/admin/things": {"delete": {"responses": {}, "security": [{"bearer": []}]}},
                "/api/v1/open": {"get": {"responses": {}, "security": [{}, {"bearer": []}]}},
                "/health": {"get": {"responses": {"200": {"description": "ok"}}}}
            }
        })
    }

    fn statuses(document: &Value, path: &str, method: &str) -> Vec<String> {
        document["paths"][path][method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn each_operation_gets_the_statuses_the_kit_can_answer() {
        let mut doc = document();
        complete(&mut doc, "thing-service");
        assert_eq!(
            statuses(&doc, "/api/v1/things", "get"),
            ["200", "400", "401", "422", "503"]
        );
        assert_eq!(
            statuses(&doc, "/api/v1/things", "post"),
            ["201", "400", "413", "415", "422", "503"]
        );
        assert_eq!(
            doc["paths"]["/api/v1/things"]["post"]["responses"]["422"]["description"], "own words",
            "an operation's own description is kept"
        );
        assert_eq!(
            statuses(&doc, "/api/v1/admin/things", "delete"),
            ["401", "403", "503"]
        );
        assert_eq!(
            statuses(&doc, "/api/v1/open", "get"),
            ["503"],
            "an optional token is never a 401"
        );
        assert_eq!(statuses(&doc, "/health", "get"), ["200"]);
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        let parameters = &doc["paths"]["/api/v1/things"]["get"]["parameters"];
        assert_eq!(parameters[0]["allowEmptyValue"], true, "optional query");
        assert!(parameters[1].get("allowEmptyValue").is_none(), "required");
        assert!(parameters[2].get("allowEmptyValue").is_none(), "path");
    }
}
