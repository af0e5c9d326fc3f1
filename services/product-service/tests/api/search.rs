//! `GET /api/v1/products/search`: ranking, prefixes, every searchable field, and hostile
//! queries that must never reach the full-text engines' syntax.

use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_fields, json_of, problem, product_body, spawn_app};

const SEARCH: &str = "/api/v1/products/search";

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn search(app: &TestApp, q: &str) -> Value {
    let response = app.get(SEARCH).query(&[("q", q)]).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "q={q:?}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn product(app: &TestApp, name: &str, category: &str, description: &str, sku: &str) {
    let mut body = product_body(name, category, 1000, 5);
    body["description"] = json!(description);
    body["sku"] = json!(sku);
    app.create(&body).await;
}

async fn desks(app: &TestApp) {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    // Created so that the exact match is neither first nor last by id.
    product(
        app,
        "Standing desk",
        "furniture",
        "Height adjustable, for a desk job.",
        &format!("SD-{suffix}"),
    )
    .await;
    product(
        app,
        "Desk",
        "furniture",
        "A plain desk.",
        &format!("DK-{suffix}"),
    )
    .await;
    product(
        app,
        "Desk lamp",
        "lighting",
        "LED lamp for your desk.",
        &format!("DL-{suffix}"),
    )
    .await;
    product(
        app,
        "Ceramic mug",
        "kitchen",
        "Holds coffee.",
        &format!("QZX{suffix}-MUG"),
    )
    .await;
}

async fn an_exact_name_match_ranks_first(backend: Backend) {
    let app = spawn_app(backend).await;
    desks(&app).await;
    for q in ["desk", "Desk", "DESK", "  desk  "] {
        let found = search(&app, q).await;
        assert_eq!(found["total"], 3, "q={q:?}: {found}");
        let names = names(&found);
        assert_eq!(names[0], "Desk", "q={q:?}: {names:?}");
        let mut rest = names[1..].to_vec();
        rest.sort();
        assert_eq!(rest, ["Desk lamp", "Standing desk"]);
    }
    let exact = search(&app, "desk lamp").await;
    assert_eq!(names(&exact), ["Desk lamp"], "every word must match");
    let paged = app
        .get(SEARCH)
        .query(&[("q", "desk"), ("per_page", "1"), ("page", "2")])
        .await;
    let paged: Value = paged.json().await.unwrap();
    assert_eq!(paged["total"], 3);
    assert_eq!(paged["page"], 2);
    assert_eq!(paged["items"].as_array().unwrap().len(), 1);
    assert_ne!(paged["items"][0]["name"], "Desk");
}

async fn prefixes_and_every_field_match(backend: Backend) {
    let app = spawn_app(backend).await;
    desks(&app).await;
    assert_eq!(names(&search(&app, "lam").await), ["Desk lamp"], "prefix");
    assert_eq!(names(&search(&app, "sta de").await), ["Standing desk"]);
    assert_eq!(
        names(&search(&app, "qzx").await),
        ["Ceramic mug"],
        "SKU prefix"
    );
    let mug = search(&app, "Ceramic mug").await;
    let sku = mug["items"][0]["sku"].as_str().unwrap().to_owned();
    assert_eq!(
        names(&search(&app, &sku).await),
        ["Ceramic mug"],
        "whole SKU"
    );
    assert_eq!(
        names(&search(&app, &sku.to_ascii_lowercase()).await),
        ["Ceramic mug"]
    );
    assert_eq!(
        names(&search(&app, "kitchen").await),
        ["Ceramic mug"],
        "category"
    );
    assert_eq!(
        names(&search(&app, "coffee").await),
        ["Ceramic mug"],
        "description"
    );
    assert_eq!(names(&search(&app, "adjustable").await), ["Standing desk"]);
    let lighting = search(&app, "lighting").await;
    assert_eq!(names(&lighting), ["Desk lamp"]);
    let none = search(&app, "wardrobe").await;
    assert_eq!(none["total"], 0);
    assert_eq!(none["items"], json!([]));

    // Changes are searchable at once: a rename, and an archive.
    let id = lighting["items"][0]["id"].as_str().unwrap();
    assert_eq!(
        app.update(id, &json!({"name": "Reading light"}))
            .await
            .status(),
        200
    );
    assert_eq!(names(&search(&app, "reading").await), ["Reading light"]);
    assert_eq!(
        search(&app, "desk").await["total"],
        3,
        "its description says desk"
    );
    assert_eq!(
        search(&app, "lamp").await["total"],
        1,
        "description: LED lamp"
    );
    assert_eq!(app.archive(id).await.status(), 204);
    assert_eq!(search(&app, "reading").await["total"], 0);
    assert_eq!(search(&app, "desk").await["total"], 2);
}

async fn hostile_queries_never_fail_the_server(backend: Backend) {
    let app = spawn_app(backend).await;
    desks(&app).await;
    let mut cafe = product_body("Café crème", "drinks", 350, 10);
    cafe["description"] = json!("木製の机 ＆ 東京");
    app.create(&cafe).await;

    let ten_kb = "desk ".repeat(2048);
    let hostile: Vec<&str> = vec![
        "\"",
        "'",
        "\"desk",
        "desk\"",
        "'desk'",
        "*",
        "desk*",
        "AND OR NOT",
        "desk AND lamp",
        "NOT desk",
        "NEAR(",
        "NEAR(desk lamp)",
        "desk NEAR/2 lamp",
        ":*",
        "desk:*",
        "desk:A",
        "&|!",
        "desk & !lamp | mug",
        "(desk",
        "desk)",
        "--",
        "desk -- comment",
        ";DROP TABLE products",
        "'; DROP TABLE products; --",
        "desk' OR '1'='1",
        "%",
        "_",
        "\\",
        "{desk}",
        "^desk",
        "desk\u{0}lamp",
        "\u{0}",
        "desk\tlamp\nmug",
        "🪑",
        "desk 🪑",
        "🪑desk🪑",
        "東京",
        "木製",
        "café",
        "CAFÉ",
        "cafe\u{301}",
        "e\u{301}\u{302}\u{303}",
        "\u{202e}ksed",
        "Ⓐ",
        "desk Ⓐ",
        "²³",
        "İstanbul",
        "ǅ ß ﬁ",
        "١٢٣",
        "\u{200b}desk\u{200b}",
        &ten_kb,
        "",
        "   ",
    ];
    for q in &hostile {
        let response = app.get(SEARCH).query(&[("q", q)]).await;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        // A 10 KB query makes the request line longer than any server here reads (414).
        assert!(
            status == 200 || status == 422 || (status == 414 && q.len() > 8000),
            "q={:?} gave {status}: {body}",
            q.chars().take(60).collect::<String>()
        );
    }
    // The table is still there, and so is everything in it.
    assert_eq!(search(&app, ";DROP TABLE products").await["total"], 0);
    assert_eq!(
        json_of(app.get("/api/v1/products").await, 200).await["total"],
        5
    );

    // Some answers are known.
    assert_eq!(
        search(&app, "desk AND lamp").await["total"],
        0,
        "no word `and`"
    );
    assert_eq!(names(&search(&app, "\"desk lamp\"").await), ["Desk lamp"]);
    assert_eq!(
        search(&app, "NEAR(desk lamp)").await["total"],
        0,
        "NEAR is a word to find, not an operator"
    );
    assert_eq!(
        search(&app, "desk 🪑").await["total"],
        3,
        "the emoji is no word"
    );
    assert_eq!(names(&search(&app, "café").await), ["Café crème"]);
    assert_eq!(
        names(&search(&app, "木製").await),
        ["Café crème"],
        "CJK prefix"
    );
    assert_eq!(search(&app, "東京").await["total"], 1);
    // Nothing to look for (no letter or digit) is a valid query that matches nothing.
    for q in ["\"", "'", "*", ":*", "&|!", "--", "🪑", "   "] {
        assert_eq!(search(&app, q).await["total"], 0, "q={q:?}");
    }
    // Empty (read as absent) or with control characters: refused, naming `q`.
    for q in ["", "\u{0}", "desk\u{0}lamp"] {
        let response = app.get(SEARCH).query(&[("q", q)]).await;
        let body = problem(response, 422).await;
        assert_eq!(error_fields(&body), ["q"], "q={q:?}");
    }
    // Longer than a query may be, shorter than a request line may be: the service's 422.
    let long = "desk ".repeat(400);
    let long = problem(app.get(SEARCH).query(&[("q", &long)]).await, 422).await;
    assert_eq!(error_fields(&long), ["q"]);
    // Longer than any request line read here: refused before the service sees it.
    let response = app.get(SEARCH).query(&[("q", &ten_kb)]).await;
    assert_eq!(response.status(), 414);
    let missing = problem(app.get(SEARCH).await, 422).await;
    assert_eq!(error_fields(&missing), ["q"]);
}

platform_testing::backend_tests!(
    an_exact_name_match_ranks_first,
    prefixes_and_every_field_match,
    hostile_queries_never_fail_the_server,
);
