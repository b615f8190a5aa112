//! Versions and aliases: published snapshots, weighted aliases, qualifiers in Invoke and CLB bindings.

use serde_json::{Value, json};

use crate::harness::{TestApp, get};

fn code(r: Result<Value, fnlb::client::ClientError>) -> String {
    match r {
        Err(fnlb::client::ClientError::Api { code, .. }) => code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn invoke(app: &TestApp, qualifier: &str) -> Value {
    let result = app.scf("Invoke", json!({"FunctionName": "color", "Qualifier": qualifier})).await.unwrap();
    let ret: Value = serde_json::from_str(result["Result"]["RetMsg"].as_str().unwrap()).unwrap();
    serde_json::from_str(ret["body"].as_str().unwrap()).unwrap()
}

fn color(env: &str) -> Value {
    json!({"Environment": {"Variables": [{"Key": "COLOR", "Value": env}]}})
}

#[tokio::test]
async fn versions_and_a_weighted_alias() {
    let app = TestApp::start();
    app.create_fixture("color", "color", color("blue")).await.unwrap();
    let v1 = app.scf("PublishVersion", json!({"FunctionName": "color", "Description": "blue"})).await.unwrap();
    assert_eq!(v1["FunctionVersion"], "1");
    let mut green = color("green");
    green["FunctionName"] = json!("color");
    app.scf("UpdateFunctionConfiguration", green).await.unwrap();
    let v2 = app.scf("PublishVersion", json!({"FunctionName": "color"})).await.unwrap();
    assert_eq!(v2["FunctionVersion"], "2");
    let listed = app.scf("ListVersionByFunction", json!({"FunctionName": "color"})).await.unwrap();
    assert_eq!(listed["FunctionVersion"], json!(["$LATEST", "1", "2"]));

    assert_eq!(invoke(&app, "1").await, json!({"color": "blue", "version": "1"}));
    assert_eq!(invoke(&app, "2").await, json!({"color": "green", "version": "2"}));
    assert_eq!(invoke(&app, "$LATEST").await, json!({"color": "green", "version": "$LATEST"}));
    let v1_config = app.scf("GetFunction", json!({"FunctionName": "color", "Qualifier": "1"})).await.unwrap();
    assert_eq!(v1_config["Environment"]["Variables"][0]["Value"], "blue");

    let prod = json!({
        "FunctionName": "color", "Name": "prod", "FunctionVersion": "1",
        "RoutingConfig": {"AdditionalVersionWeights": [{"Version": "2", "Weight": 0.3}]},
    });
    app.scf("CreateAlias", prod.clone()).await.unwrap();
    assert_eq!(code(app.scf("CreateAlias", prod).await), "ResourceInUse.Alias");
    let alias = app.scf("GetAlias", json!({"FunctionName": "color", "Name": "prod"})).await.unwrap();
    assert_eq!(alias["RoutingConfig"]["AdditionalVersionWeights"][0]["Weight"], 0.3);
    let aliases = app.scf("ListAliases", json!({"FunctionName": "color"})).await.unwrap();
    assert_eq!(aliases["TotalCount"], 2, "$DEFAULT and prod");

    // 70/30, checked statistically: 400 calls give 120 ± 18 (2 standard deviations) on the second version.
    let mut second = 0;
    for _ in 0..400 {
        if invoke(&app, "prod").await["version"] == "2" {
            second += 1;
        }
    }
    assert!((80..=160).contains(&second), "{second} of 400 calls went to version 2");

    // A CLB rule bound to the alias.
    app.scf("UpdateAlias", json!({"FunctionName": "color", "Name": "prod", "FunctionVersion": "1"})).await.unwrap();
    let route = app.route_to("color").await;
    let mut rebind = crate::harness::bind_params(&route.lb_id, &route.listener_id, &route.location_id, "color");
    app.clb("DeregisterFunctionTargets", rebind.clone()).await.unwrap();
    rebind["FunctionTargets"][0]["Function"]["FunctionQualifier"] = json!("prod");
    app.clb("RegisterFunctionTargets", rebind.clone()).await.unwrap();
    let seen: Value = get(&format!("{}/", route.base)).await.json();
    assert_eq!(seen, json!({"color": "blue", "version": "1"}));
    rebind["FunctionTargets"][0]["Function"]["FunctionQualifier"] = json!("nope");
    app.clb("DeregisterFunctionTargets", rebind.clone()).await.unwrap();
    assert_eq!(code(app.clb("RegisterFunctionTargets", rebind).await), "ResourceNotFound");

    assert_eq!(
        code(app.scf("DeleteFunction", json!({"FunctionName": "color", "Qualifier": "1"})).await),
        "UnsupportedOperation.AliasBind"
    );
    assert_eq!(
        code(app.scf("DeleteAlias", json!({"FunctionName": "color", "Name": "$DEFAULT"})).await),
        "InvalidParameterValue.Alias"
    );
    app.scf("DeleteAlias", json!({"FunctionName": "color", "Name": "prod"})).await.unwrap();
    app.scf("DeleteFunction", json!({"FunctionName": "color", "Qualifier": "1"})).await.unwrap();
    let listed = app.scf("ListVersionByFunction", json!({"FunctionName": "color"})).await.unwrap();
    assert_eq!(listed["FunctionVersion"], json!(["$LATEST", "2"]));
    assert_eq!(
        code(app.scf("Invoke", json!({"FunctionName": "color", "Qualifier": "1"})).await),
        "ResourceNotFound.Qualifier"
    );
}

#[tokio::test]
async fn provisioned_concurrency_keeps_a_version_warm() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--idle-timeout", "1"]);
    app.create_fixture("color", "color", color("red")).await.unwrap();
    app.scf("PublishVersion", json!({"FunctionName": "color"})).await.unwrap();
    let put = json!({"FunctionName": "color", "Qualifier": "1", "VersionProvisionedConcurrencyNum": 2});
    app.scf("PutProvisionedConcurrencyConfig", put).await.unwrap();
    let wrong = json!({"FunctionName": "color", "Qualifier": "$LATEST", "VersionProvisionedConcurrencyNum": 1});
    assert_eq!(code(app.scf("PutProvisionedConcurrencyConfig", wrong).await), "InvalidParameterValue.Qualifier");
    crate::harness::eventually("two instances are warm", std::time::Duration::from_secs(20), || async {
        let got = app.scf("GetProvisionedConcurrencyConfig", json!({"FunctionName": "color"})).await.ok()?;
        let allocated = &got["Allocated"][0];
        (allocated["AvailableProvisionedConcurrencyNum"] == 2 && allocated["Status"] == "Done").then_some(())
    })
    .await;
    // The first invocation finds a warm instance: its log has no cold-start report.
    let invoked =
        app.scf("Invoke", json!({"FunctionName": "color", "Qualifier": "1", "LogType": "Tail"})).await.unwrap();
    let log = invoked["Result"]["Log"].as_str().unwrap();
    assert!(log.contains("Report RequestId") && !log.contains("Init Report"), "{log}");

    app.scf("DeleteProvisionedConcurrencyConfig", json!({"FunctionName": "color", "Qualifier": "1"})).await.unwrap();
    let got = app.scf("GetProvisionedConcurrencyConfig", json!({"FunctionName": "color"})).await.unwrap();
    assert_eq!(got["Allocated"], json!([]));
}
