//! Namespaces and reserved concurrency.

use serde_json::json;

use crate::harness::{TestApp, get};

fn code(r: Result<serde_json::Value, fnlb::client::ClientError>) -> String {
    match r {
        Err(fnlb::client::ClientError::Api { code, .. }) => code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn namespaces_hold_functions_and_follow_the_default_namespace_rules() {
    let app = TestApp::start();
    assert_eq!(
        code(app.scf("CreateNamespace", json!({"Namespace": "default"})).await),
        "InvalidParameterValue.DefaultNamespace"
    );
    assert_eq!(
        code(app.scf("DeleteNamespace", json!({"Namespace": "default"})).await),
        "InvalidParameterValue.DefaultNamespace"
    );
    assert_eq!(
        code(app.scf("CreateNamespace", json!({"Namespace": "bad name!"})).await),
        "InvalidParameterValue.NamespaceInvalid"
    );
    assert_eq!(
        code(app.create_fixture("fn-a", "echo", json!({"Namespace": "shop"})).await),
        "ResourceNotFound.Namespace"
    );

    app.scf("CreateNamespace", json!({"Namespace": "shop", "Description": "the shop"})).await.unwrap();
    assert_eq!(code(app.scf("CreateNamespace", json!({"Namespace": "shop"})).await), "ResourceInUse.Namespace");
    app.create_fixture("fn-a", "echo", json!({"Namespace": "shop"})).await.unwrap();
    app.create_fixture("fn-a", "echo", json!({})).await.expect("the same name in another namespace");
    let listed = app.scf("ListNamespaces", json!({})).await.unwrap();
    assert_eq!(listed["TotalCount"], 2);
    assert_eq!(listed["Namespaces"][0]["Name"], "default");
    assert_eq!(listed["Namespaces"][1]["Description"], "the shop");
    let in_shop = app.scf("ListFunctions", json!({"Namespace": "shop"})).await.unwrap();
    assert_eq!(in_shop["TotalCount"], 1);

    app.scf("UpdateNamespace", json!({"Namespace": "shop", "Description": "renamed"})).await.unwrap();
    assert_eq!(code(app.scf("DeleteNamespace", json!({"Namespace": "shop"})).await), "FailedOperation.DeleteNamespace");
    app.scf("DeleteFunction", json!({"FunctionName": "fn-a", "Namespace": "shop"})).await.unwrap();
    app.scf("DeleteNamespace", json!({"Namespace": "shop"})).await.unwrap();
    assert_eq!(app.scf("ListNamespaces", json!({})).await.unwrap()["TotalCount"], 1);

    for n in 1..=4 {
        app.scf("CreateNamespace", json!({"Namespace": format!("ns{n}")})).await.unwrap();
    }
    assert_eq!(code(app.scf("CreateNamespace", json!({"Namespace": "ns5"})).await), "LimitExceeded.Namespace");
}

#[tokio::test]
async fn reserved_concurrency_caps_instances() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--queue-timeout", "1"]);
    app.create_fixture("slow", "slow", json!({"Timeout": 10})).await.unwrap();
    app.scf("PublishVersion", json!({"FunctionName": "slow"})).await.unwrap();
    app.scf("PutReservedConcurrencyConfig", json!({"FunctionName": "slow", "ReservedConcurrencyMem": 128}))
        .await
        .unwrap();
    let reserved = app.scf("GetReservedConcurrencyConfig", json!({"FunctionName": "slow"})).await.unwrap();
    assert_eq!(reserved["ReservedMem"], 128);
    let base = app.route_to("slow").await.base;

    // One instance of 128 MB: a second request waits for it, past the queue timeout.
    let slow = tokio::spawn({
        let url = format!("{base}/slow");
        async move { get(&url).await }
    });
    crate::harness::eventually("the slow request runs", std::time::Duration::from_secs(10), || async {
        (!crate::harness::instance_processes("slow").is_empty()).then_some(())
    })
    .await;
    let throttled = get(&format!("{base}/")).await;
    assert_eq!(throttled.status, 503, "{}", throttled.text());
    assert_eq!(throttled.json()["errno"], 432);
    // The reservation covers all the function's versions together.
    let other_version = app.scf("Invoke", json!({"FunctionName": "slow", "Qualifier": "1"})).await.unwrap();
    let error: serde_json::Value = serde_json::from_str(other_version["Result"]["RetMsg"].as_str().unwrap()).unwrap();
    assert_eq!(error["statusCode"], 432, "{error}");
    assert_eq!(slow.await.unwrap().text(), "done");

    app.scf("DeleteReservedConcurrencyConfig", json!({"FunctionName": "slow"})).await.unwrap();
    let reserved = app.scf("GetReservedConcurrencyConfig", json!({"FunctionName": "slow"})).await.unwrap();
    assert!(reserved["ReservedMem"].is_null());
    app.scf("PutReservedConcurrencyConfig", json!({"FunctionName": "slow", "ReservedConcurrencyMem": 0}))
        .await
        .unwrap();
    let refused = get(&format!("{base}/")).await;
    assert_eq!((refused.status, refused.json()["errno"].clone()), (503, json!(432)));
}
