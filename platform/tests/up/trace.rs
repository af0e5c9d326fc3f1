//! Distributed tracing across the real binary: one checkout is one trace through every
//! service, exported over OTLP to a collector the test runs.

use std::time::Duration;

use platform_testing::TestApp;
use serde_json::json;

use crate::journeys::{admin_token, confirmation_reaches_the_inbox, place_order, product_journey};
use crate::spawn_platform;

/// One checkout with the client's own `traceparent` gives one trace through every service:
/// the gateway, the order service and its saga steps, the product and payment services over
/// gRPC, the outbox relay, and the notification service's consumer, each span parented, named
/// and described as the OpenTelemetry conventions say, under its own service's name.
#[test]
fn one_checkout_is_one_trace_through_every_service() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let collector = runtime
        .block_on(platform_testing::otlp::Collector::start())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, gateway, _) = spawn_platform(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str())],
    );
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let declined_trace = uuid::Uuid::new_v4().simple().to_string();
    let client_span = "00f067aa0ba902b7";
    let order_id = runtime.block_on(async {
        let app = TestApp::new(&gateway);
        let product = product_journey(&app).await;
        let buyer = admin_token(&app).await;
        let traceparent = format!("00-{trace_id}-{client_span}-01");
        let order = place_order(&app, &buyer, &product, 1, Some(&traceparent)).await;
        let order_id = order["id"].as_str().unwrap().to_owned();
        // The confirmation's notification is the trace's last hop.
        confirmation_reaches_the_inbox(&app, &buyer, &order_id).await;
        // A declined card: the failure shows in the trace where it happened.
        let declined = app
            .post("/api/v1/orders")
            .by(&buyer)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .header(
                "traceparent",
                format!("00-{declined_trace}-{client_span}-01"),
            )
            .json(&json!({
                "items": [{"product_id": product, "quantity": 1}],
                "payment": {"token": "tok_decline"},
                "shipping_address": {"name": "Journey", "line1": "1 Road", "city": "Town",
                    "postal_code": "12345", "country": "DE"},
            }))
            .await;
        assert!(declined.status().is_client_error() || declined.status().is_success());
        order_id
    });
    // A graceful stop flushes every span still batched.
    let status = platform_testing::process::stop(&mut child, "TERM", Duration::from_secs(20));
    assert!(
        status.success(),
        "{status:?}: {}",
        std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
    );
    let spans = runtime.block_on(async {
        for _ in 0..50 {
            let spans = collector.trace(&trace_id);
            if spans.iter().any(|s| s.name == "process order") {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        collector.trace(&trace_id)
    });
    // The tree, for a reader of `--nocapture` output.
    fn print_tree(spans: &[platform_testing::otlp::Span], parent: &str, depth: usize) {
        for span in spans.iter().filter(|s| s.parent_span_id == parent) {
            eprintln!("{}{} [{}]", "  ".repeat(depth), span.name, span.service);
            print_tree(spans, &span.span_id, depth + 1);
        }
    }
    print_tree(&spans, client_span, 0);
    let described: Vec<String> = spans
        .iter()
        .map(|s| format!("{} {:?} <- {}", s.service, s.name, s.parent_span_id))
        .collect();

    // Every span hangs off another of the trace, or off the client's own span.
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for span in &spans {
        assert!(
            span.parent_span_id == client_span || ids.contains(span.parent_span_id.as_str()),
            "{} {:?} has a parent outside the trace: {described:#?}",
            span.service,
            span.name
        );
    }
    let find = |service: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name)
            .unwrap_or_else(|| panic!("no {service} span {name:?}: {described:#?}"))
    };
    let parent_of = |span: &platform_testing::otlp::Span| {
        spans
            .iter()
            .find(|s| s.span_id == span.parent_span_id)
            .unwrap_or_else(|| panic!("{:?} has no parent in the trace", span.name))
    };

    // HTTP: the gateway's server span is the client's child, the order service's is under it.
    // The gateway names its span after its own route pattern, the order service after its.
    let edge = spans
        .iter()
        .find(|s| s.service == "api-gateway" && s.kind == 2)
        .unwrap_or_else(|| panic!("no gateway server span: {described:#?}"));
    let route = edge.attribute("http.route").unwrap_or_default();
    assert!(route.starts_with("/api/v1/orders"), "{route}");
    assert_eq!(edge.name, format!("POST {route}"));
    assert_eq!(edge.parent_span_id, client_span);
    assert_eq!(edge.kind, 2, "server");
    assert_eq!(edge.attribute("http.request.method"), Some("POST"));
    assert_eq!(edge.attribute("http.response.status_code"), Some("201"));
    assert_eq!(edge.attribute("url.scheme"), Some("http"));
    let host = gateway
        .trim_start_matches("http://")
        .rsplit_once(':')
        .map_or("", |(host, _)| host);
    assert_eq!(edge.attribute("server.address"), Some(host));
    let order = find("order-service", "POST /api/v1/orders");
    assert_eq!(order.attribute("http.route"), Some("/api/v1/orders"));

    // The saga, one span per step, each calling out over gRPC.
    for step in ["saga reserve", "saga charge", "saga commit"] {
        let span = find("order-service", step);
        assert_eq!(span.attribute("saga.outcome"), Some("advanced"), "{step}");
    }
    for (service, rpc_service, method, step) in [
        (
            "product-service",
            "platform.product.v1.ProductService",
            "Reserve",
            "saga reserve",
        ),
        (
            "payment-service",
            "platform.payment.v1.PaymentService",
            "Charge",
            "saga charge",
        ),
        (
            "product-service",
            "platform.product.v1.ProductService",
            "Commit",
            "saga commit",
        ),
    ] {
        let name = format!("{rpc_service}/{method}");
        let call = find("order-service", &name);
        assert_eq!(call.kind, 3, "client");
        assert_eq!(parent_of(call).name, step);
        let served = find(service, &name);
        assert_eq!(served.kind, 2, "server");
        assert_eq!(served.parent_span_id, call.span_id, "{name}");
        assert_eq!(served.attribute("rpc.system"), Some("grpc"));
        assert_eq!(served.attribute("rpc.service"), Some(rpc_service));
        assert_eq!(served.attribute("rpc.method"), Some(method));
        assert_eq!(served.attribute("rpc.grpc.status_code"), Some("0"));
    }
    // The card was charged with a provider, in a client span of its own.
    let provider = find("payment-service", "charge sandbox");
    assert_eq!(provider.kind, 3);

    // Database work shows, named by operation and table, without parameter values.
    let queries: Vec<_> = spans
        .iter()
        .filter(|s| s.attributes.contains_key("db.system.name"))
        .collect();
    assert!(
        queries.iter().any(|q| q.service == "order-service"
            && q.attribute("db.operation.name") == Some("insert")
            && q.attribute("db.collection.name") == Some("orders")),
        "no insert into orders: {described:#?}"
    );
    assert!(
        queries
            .iter()
            .all(|q| !q.attributes.contains_key("db.query.text")),
        "no statement text (it could carry values)"
    );

    // Events: published from the outbox, processed by the notification service.
    let publish = spans
        .iter()
        .find(|s| s.name == "publish order" && s.attribute("event_type") == Some("order.confirmed"))
        .unwrap_or_else(|| panic!("no publish of order.confirmed: {described:#?}"));
    assert_eq!(publish.service, "order-service");
    assert_eq!(publish.kind, 4, "producer");
    assert_eq!(
        publish.attribute("messaging.operation.type"),
        Some("publish")
    );
    assert_eq!(
        publish.attribute("messaging.destination.name"),
        Some("order")
    );
    let processed = spans
        .iter()
        .find(|s| {
            s.service == "notification-service"
                && s.name == "process order"
                && s.parent_span_id == publish.span_id
        })
        .unwrap_or_else(|| {
            panic!("the notification service did not process it in the trace: {described:#?}")
        });
    assert_eq!(processed.kind, 5, "consumer");
    assert_eq!(processed.attribute("messaging.system"), Some("embedded"));
    assert_eq!(
        processed.attribute("messaging.consumer.group.name"),
        Some("notification-service")
    );
    assert!(!order_id.is_empty());

    // The declined charge: an error span with an exception event, and the saga compensating.
    let declined = collector.trace(&declined_trace);
    let charge = declined
        .iter()
        .find(|s| s.name == "charge sandbox")
        .unwrap_or_else(|| panic!("no charge span in the declined trace: {declined:#?}"));
    assert_eq!(charge.status, 2, "error status");
    assert!(charge.events.iter().any(|e| e == "exception"), "{charge:?}");
    assert!(
        declined.iter().any(|s| s.name == "saga compensate"),
        "the saga compensates in the same trace: {declined:#?}"
    );
}
