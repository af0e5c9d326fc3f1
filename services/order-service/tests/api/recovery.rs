//! Crashes: an order service killed after the charge and before anything of it was
//! recorded resumes the saga when it comes back, with exactly one charge; a saga stuck past
//! its deadline is compensated, refund included.

use std::time::Duration;

use order_service::config::HaltAt;
use platform_testing::Backend;

use crate::helpers::{eventually, json_of, new_key, order_body, spawn_app};

/// Runs an order service on a runtime of its own until the saga halts after the charge, then
/// drops that runtime (every task of the service dies mid-flight, as in a crash). Returns the
/// order id.
async fn crash_after_the_charge(app: &crate::helpers::TestApp, mug: &str) -> String {
    let mut config = app.config.clone();
    config.saga.halt_at = Some(HaltAt::AfterChargeCall);
    config.saga.checkout_wait = Duration::from_millis(300);
    let body = order_body(&[(mug, 2)], "tok_visa");
    let token = app.user.token.clone();
    let (placed_tx, placed_rx) = tokio::sync::oneshot::channel();
    let (crash_tx, crash_rx) = std::sync::mpsc::channel::<()>();
    let doomed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let service = order_service::Application::build(config).await.unwrap();
            let base = format!("http://{}", platform_http::Service::http_addr(&service));
            tokio::spawn(platform_http::Service::run(
                service,
                platform_http::CancellationToken::new(),
            ));
            let response = platform_testing::TestApp::new(base)
                .post("/api/v1/orders")
                .by(&token)
                .header("Idempotency-Key", new_key())
                .json(&body)
                .await;
            // The saga halted: checkout is still "running".
            let order = json_of(response, 202).await;
            let _ = placed_tx.send(order["id"].as_str().unwrap().to_owned());
        });
        // Wait for the word, then drop the runtime with everything on it.
        let _ = crash_rx.recv();
        runtime.shutdown_background();
    });
    let id = placed_rx.await.unwrap();
    crash_tx.send(()).unwrap();
    doomed.join().unwrap();
    id
}

async fn a_crash_after_the_charge_resumes_with_exactly_one_charge(backend: Backend) {
    let mut app = spawn_app(backend).await;
    // Only the crashing instance and its successor run sagas.
    app.stop_orders();
    let mug = app.new_product("Mug", 1250, 5).await;
    let id = crash_after_the_charge(&app, &mug).await;
    let charged = app.payments_for(&id).await;
    assert_eq!(charged.len(), 1, "the charge happened before the crash");
    assert_eq!(charged[0]["status"], "captured");
    assert_eq!(app.stock(&mug).await, (5, 2, 3), "still reserved");

    // The successor finds the stalled saga once the dead process's lease runs out.
    let config = app.config.clone();
    app.restart_orders(config).await;
    eventually("the saga to resume", Duration::from_secs(20), || async {
        app.order(&app.user, &id).await["status"] == "confirmed"
    })
    .await;
    let order = app.order(&app.user, &id).await;
    let payments = app.payments_for(&id).await;
    assert_eq!(payments.len(), 1, "exactly one charge");
    assert_eq!(
        order["payment_id"], payments[0]["id"],
        "the charge was recognised"
    );
    assert_eq!(app.stock(&mug).await, (3, 0, 3), "sold once");
}

async fn a_saga_stuck_past_its_deadline_is_compensated(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.stop_orders();
    app.config.saga.deadline = Duration::from_secs(2);
    let mug = app.new_product("Mug", 1250, 5).await;
    let id = crash_after_the_charge(&app, &mug).await;
    // Back only after the deadline: the saga must not go forward any more.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let config = app.config.clone();
    app.restart_orders(config).await;
    eventually(
        "the saga to be compensated",
        Duration::from_secs(20),
        || async { app.order(&app.user, &id).await["status"] == "failed" },
    )
    .await;
    let order = app.order(&app.user, &id).await;
    assert!(
        order["failure_reason"]
            .as_str()
            .unwrap()
            .contains("did not complete in time"),
        "{order}"
    );
    // The unrecorded charge was found under the order's key and given back.
    let payments = app.payments_for(&id).await;
    assert_eq!(payments.len(), 1, "no second charge");
    assert_eq!(payments[0]["status"], "refunded");
    assert_eq!(order["refunded"], 2500);
    assert_eq!(order["payment_id"], payments[0]["id"]);
    assert_eq!(app.stock(&mug).await, (5, 0, 5), "stock released");
}

async fn cancelling_a_saga_whose_driver_died_refunds_the_unrecorded_charge(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.stop_orders();
    let mug = app.new_product("Mug", 1250, 5).await;
    let id = crash_after_the_charge(&app, &mug).await;
    let config = app.config.clone();
    app.restart_orders(config).await;
    // The dead driver's lease still runs: the cancellation is recorded and carried out by
    // whoever drives the saga next, before it may confirm anything.
    let response = app.cancel(&id).by(&app.user).await;
    let status = response.status().as_u16();
    assert!(status == 200 || status == 202, "{status}");
    eventually("the cancellation", Duration::from_secs(20), || async {
        app.order(&app.user, &id).await["status"] == "cancelled"
    })
    .await;
    let order = app.order(&app.user, &id).await;
    assert_eq!(order["refunded"], 2500, "{order}");
    let payments = app.payments_for(&id).await;
    assert_eq!(payments.len(), 1, "no second charge");
    assert_eq!(payments[0]["status"], "refunded");
    assert_eq!(app.stock(&mug).await, (5, 0, 5));
    // Again: harmless.
    assert_eq!(
        json_of(app.cancel(&id).by(&app.user).await, 200).await["status"],
        "cancelled"
    );
}

platform_testing::backend_tests!(
    a_crash_after_the_charge_resumes_with_exactly_one_charge,
    a_saga_stuck_past_its_deadline_is_compensated,
    cancelling_a_saga_whose_driver_died_refunds_the_unrecorded_charge,
);
