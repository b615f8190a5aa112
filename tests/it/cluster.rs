//! Cluster mode: three fnlb nodes on one PostgreSQL database (started by the test, so that it can be killed).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestApp, bind_params, eventually, free_addr, get, try_request};
use crate::pg::Pg;

/// One node of a test cluster: its process and the address its listeners bind.
struct Node {
    app: TestApp,
    address: Ipv4Addr,
    id: String,
}

/// Starts `n` nodes at once on `pg`, each in a data directory of its own under `root`.
fn start_nodes(pg: &Pg, root: &Path, ids: &[&str]) -> Vec<Node> {
    let handles: Vec<_> = ids
        .iter()
        .map(|id| {
            let (address, _) = free_addr();
            let (id, url, dir) = (id.to_string(), pg.url(), root.join(id));
            std::thread::spawn(move || Node { app: start_node(&dir, &url, &id, address), address, id })
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("a node starts")).collect()
}

fn start_node(dir: &Path, url: &str, id: &str, address: Ipv4Addr) -> TestApp {
    start_node_with(dir, url, id, address, &[])
}

/// A node with more `serve` arguments.
fn start_node_with(dir: &Path, url: &str, id: &str, address: Ipv4Addr, extra: &[&str]) -> TestApp {
    let address = address.to_string();
    let mut args = vec!["--store", url, "--node-id", id, "--listen-address", &address, "--node-timeout", "3000"];
    args.extend_from_slice(extra);
    TestApp::start_in(dir, &args)
}

/// A function rule on `port` of a new load balancer, created through `node`: (load balancer, listener, rule).
async fn route(node: &TestApp, function: &str, port: u16) -> (String, String, String) {
    let (vip, _) = free_addr();
    let lb = node.clb("CreateLoadBalancer", json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()})).await.unwrap();
    let lb = lb["LoadBalancerIds"][0].as_str().unwrap().to_string();
    let listener =
        node.clb("CreateListener", json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTP"})).await.unwrap();
    let listener = listener["ListenerIds"][0].as_str().unwrap().to_string();
    let rule = json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [{"Domain": "fnlb.test", "Url": "/"}]});
    let rule = node.clb("CreateRule", rule).await.unwrap()["LocationIds"][0].as_str().unwrap().to_string();
    node.clb("RegisterFunctionTargets", bind_params(&lb, &listener, &rule, function)).await.unwrap();
    (lb, listener, rule)
}

/// The status of a request to the rule through `node` (0: no response).
async fn status_via(node: &Node, port: u16) -> u16 {
    let url = format!("http://{}:{port}/", node.address);
    try_request("GET", &url, &[("host", "fnlb.test")], "").await.map_or(0, |reply| reply.status)
}

/// A directory holding a Python function's `index.py`.
fn function_dir(root: &Path, source: &str) -> std::path::PathBuf {
    let dir = root.join("code");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.py"), source).unwrap();
    dir
}

/// A port free on every node's address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_at_once_share_one_state_and_serve_each_others_changes() {
    let pg = Pg::start();
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), &["node-a", "node-b", "node-c"]);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    // One first account for the whole cluster, whichever node made it.
    assert_eq!(a.app.credentials.secret_id, b.app.credentials.secret_id);
    assert_eq!(a.app.credentials.secret_id, c.app.credentials.secret_id);
    let migrations = pg.sql("SELECT COUNT(*) = MAX(version) AND MIN(version) = 1 FROM fnlb.migrations");
    assert_eq!(migrations, "t", "each migration applied once, in order");

    // A change made through A serves on B and C.
    a.app.create_fixture("cluster-hello", "echo", json!({})).await.unwrap();
    let port = free_port();
    let (lb, listener, rule) = route(&a.app, "cluster-hello", port).await;
    for node in &nodes {
        eventually(&format!("the rule serves on {}", node.id), Duration::from_secs(10), || async {
            (status_via(node, port).await == 200).then_some(())
        })
        .await;
    }
    // Reads on any node show what any node wrote.
    let described = c.app.clb("DescribeLoadBalancers", json!({"LoadBalancerIds": [lb]})).await.unwrap();
    assert_eq!(described["TotalCount"], 1);

    // A change made through B (the rule deleted) serves on A and C, and its task is done everywhere.
    let deleted = b
        .app
        .clb("DeleteRule", json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationIds": [rule]}))
        .await
        .unwrap();
    for node in &nodes {
        eventually(&format!("the rule is gone on {}", node.id), Duration::from_secs(10), || async {
            (status_via(node, port).await == 404).then_some(())
        })
        .await;
    }
    let task = deleted["RequestId"].as_str().unwrap().to_string();
    eventually("the task is done on every node", Duration::from_secs(10), || async {
        let status = c.app.clb("DescribeTaskStatus", json!({"TaskId": task})).await.unwrap();
        (status["Status"] == 0).then_some(())
    })
    .await;

    // Every node records the version it serves.
    let head = pg.sql("SELECT version FROM fnlb.head");
    eventually("every node serves the head", Duration::from_secs(10), || async {
        let behind = pg.sql(&format!("SELECT COUNT(*) FROM fnlb.nodes WHERE version < {head}"));
        (behind == "0").then_some(())
    })
    .await;
    assert_eq!(pg.sql("SELECT COUNT(*) FROM fnlb.nodes"), "3");
    // `/status` lists the cluster's nodes; `/metrics` exports the version served and the lag.
    eventually("the status lists three live nodes", Duration::from_secs(10), || async {
        let status = get(&format!("http://{}/status", c.app.admin_addr)).await.json();
        let store = &status["store"];
        let live = store["nodes"].as_array()?.iter().filter(|n| n["live"] == true).count();
        (store["kind"] == "postgres" && store["node"] == "node-c" && live == 3).then_some(())
    })
    .await;
    let shown = c.app.cli().args(["status", "--admin", &format!("http://{}", c.app.admin_addr)]).output().unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("store: postgres · node node-c"), "{shown}");
    for id in ["node-a", "node-b", "node-c"] {
        assert!(shown.lines().any(|l| l.trim_start().starts_with(id) && l.ends_with("live")), "{shown}");
    }
    let metrics = get(&format!("http://{}/metrics", a.app.admin_addr)).await.text();
    assert!(metrics.contains("\nfnlb_store_up 1\n"), "{metrics}");
    assert!(metrics.contains(&format!("\nfnlb_state_version {head}\n")), "{metrics}");
    assert!(metrics.contains("\nfnlb_state_version_lag 0\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_writing_at_once_lose_no_change_and_skip_no_version() {
    let pg = Pg::start();
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), &["writer-a", "writer-b", "reader-c"]);
    let head_before: u64 = pg.sql("SELECT version FROM fnlb.head").parse().unwrap();
    const EACH: usize = 15;
    let write = |node: &TestApp, prefix: &'static str| {
        let client = node.client();
        async move {
            for i in 0..EACH {
                let (vip, _) = free_addr();
                let params = json!({"LoadBalancerType": "OPEN", "LoadBalancerName": format!("{prefix}{i}"), "Vip": vip.to_string()});
                client.call(fnlb::api::Service::Clb, "CreateLoadBalancer", params).await.unwrap();
            }
        }
    };
    tokio::join!(write(&nodes[0].app, "from-a-"), write(&nodes[1].app, "from-b-"));

    // Every change is in the log under a version of its own, with no gap.
    let head: u64 = pg.sql("SELECT version FROM fnlb.head").parse().unwrap();
    assert_eq!(head, head_before + 2 * EACH as u64, "one version per change");
    let versions = pg.sql(&format!("SELECT COUNT(DISTINCT version) FROM fnlb.changes WHERE version > {head_before}"));
    assert_eq!(versions, (2 * EACH).to_string());
    // The third node serves all of them.
    let c = &nodes[2].app;
    eventually("every load balancer shows on the reader", Duration::from_secs(10), || async {
        let listed = c.clb("DescribeLoadBalancers", json!({"Limit": 100})).await.unwrap();
        let names: Vec<&str> = listed["LoadBalancerSet"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["LoadBalancerName"].as_str())
            .collect();
        let all = ["from-a-", "from-b-"].iter().all(|p| (0..EACH).all(|i| names.contains(&format!("{p}{i}").as_str())));
        all.then_some(())
    })
    .await;
    // A refused command changes nothing on any node.
    nodes[0].app.scf("CreateNamespace", json!({"Namespace": "made-on-a"})).await.unwrap();
    let head: u64 = pg.sql("SELECT version FROM fnlb.head").parse().unwrap();
    let refused = nodes[1].app.scf("CreateNamespace", json!({"Namespace": "made-on-a"})).await;
    assert!(refused.is_err(), "a namespace made on A exists for B");
    assert_eq!(pg.sql("SELECT version FROM fnlb.head"), head.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_serves_through_a_database_outage_and_catches_up_after_it() {
    let pg = Pg::start();
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), &["outage-a", "outage-b", "outage-c"]);
    nodes[0].app.create_fixture("outage-hello", "echo", json!({})).await.unwrap();
    let port = free_port();
    route(&nodes[0].app, "outage-hello", port).await;
    for node in &nodes {
        eventually(&format!("the rule serves on {}", node.id), Duration::from_secs(10), || async {
            (status_via(node, port).await == 200).then_some(())
        })
        .await;
    }

    // Constant load on every node while the database is killed: no request fails.
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let load = |nodes: &[Node], span: Duration| {
        let targets: Vec<String> = nodes.iter().map(|n| format!("http://{}:{port}/", n.address)).collect();
        let progress = progress.clone();
        async move {
            let end = Instant::now() + span;
            let (mut sent, mut failed) = (0u32, 0u32);
            while Instant::now() < end && sent < 5_000 {
                for url in &targets {
                    sent += 1;
                    let reply = try_request("GET", url, &[("host", "fnlb.test")], "").await;
                    if reply.map_or(true, |r| r.status != 200) {
                        failed += 1;
                    }
                    progress.store(sent, std::sync::atomic::Ordering::Relaxed);
                }
            }
            (sent, failed)
        }
    };
    let (loaded, ()) = tokio::join!(load(&nodes, Duration::from_secs(4)), async {
        // The database dies once the load is well under way.
        eventually("the load is under way", Duration::from_secs(10), || async {
            (progress.load(std::sync::atomic::Ordering::Relaxed) >= 60).then_some(())
        })
        .await;
        pg.kill();
    });
    assert_eq!(loaded.1, 0, "{} of {} requests failed while the database was killed", loaded.1, loaded.0);

    // Reads answer from the node's last state; writes fail within 2 s, saying the store is unreachable.
    let [a, b, c]: [Node; 3] = nodes.try_into().ok().expect("three nodes");
    let a_node = a;
    let a = &a_node.app;
    let listed = a.scf("ListFunctions", json!({})).await.unwrap();
    assert!(listed["Functions"].as_array().unwrap().iter().any(|f| f["FunctionName"] == "outage-hello"));
    let started = Instant::now();
    let refused = a.scf("CreateNamespace", json!({"Namespace": "during-outage"})).await;
    let took = started.elapsed();
    match refused {
        Err(fnlb::client::ClientError::Api { code, message, .. }) => {
            assert_eq!(code, "InternalError");
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("a write with the database down answered {other:?}"),
    }
    assert!(took < Duration::from_secs(2), "the refused write took {took:?}");
    // A read with an answer of the node's own does not wait for the database.
    let started = Instant::now();
    let logs = a.scf("GetFunctionLogs", json!({"FunctionName": "outage-hello"})).await.unwrap();
    assert!(logs["TotalCount"].as_u64().unwrap() > 0, "{logs}");
    assert!(started.elapsed() < Duration::from_millis(500), "the read took {:?}", started.elapsed());

    // A node restarted while the database is down serves its last state from its local copy (an accounts file
    // that would change the accounts is not applied until the database is back).
    let restarted = b;
    let dir = restarted.app.kill_9();
    let accounts = root.path().join("accounts.json");
    let account = json!([{"SecretId": "AKIDoutage0000001", "SecretKey": "an-outage-secret-key", "AppId": "1250000009",
        "Uin": "100000000009"}]);
    std::fs::write(&accounts, account.to_string()).unwrap();
    let accounts = accounts.display().to_string();
    let b = Node {
        app: start_node_with(&dir, &pg.url(), &restarted.id, restarted.address, &["--accounts", &accounts]),
        address: restarted.address,
        id: restarted.id,
    };
    eventually("the restarted node serves its last state", Duration::from_secs(10), || async {
        (status_via(&b, port).await == 200).then_some(())
    })
    .await;
    let (sent, failed) = load(std::slice::from_ref(&b), Duration::from_secs(1)).await;
    assert_eq!(failed, 0, "{failed} of {sent} requests to the restarted node failed");

    // The database returns: nodes reconnect by themselves, writes succeed, and every node catches up.
    pg.start_again();
    eventually("writes succeed again", Duration::from_secs(15), || async {
        a.scf("CreateNamespace", json!({"Namespace": "after-outage"})).await.ok()
    })
    .await;
    for node in [&a_node, &b, &c] {
        eventually(&format!("{} catches up", node.id), Duration::from_secs(15), || async {
            let listed = node.app.scf("ListNamespaces", json!({"Limit": 100})).await.ok()?;
            let names: Vec<Value> = listed["Namespaces"].as_array()?.iter().map(|n| n["Name"].clone()).collect();
            names.contains(&json!("after-outage")).then_some(())
        })
        .await;
    }
    assert_eq!(
        pg.sql("SELECT COUNT(*) FROM fnlb.entities WHERE kind = 'namespace' AND key LIKE '%/during-outage'"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_asynchronous_jobs_run_elsewhere_and_every_nodes_logs_show_everywhere() {
    let pg = Pg::start();
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), &["jobs-a", "jobs-b", "jobs-c"]);
    let code = function_dir(
        root.path(),
        "import time\n\ndef main_handler(event, context):\n    time.sleep(event.get('seconds', 0))\n    \
         print('slept', event.get('seconds', 0))\n    return {'statusCode': 200, 'body': 'ok'}\n",
    );
    nodes[0].app.create_from_dir("cluster-napper", &code, json!({"Timeout": 30})).await.unwrap();

    // Invocations on every node show in the logs read on any node, each naming its node.
    for node in &nodes {
        eventually(&format!("{} runs the function", node.id), Duration::from_secs(10), || async {
            let params = json!({"FunctionName": "cluster-napper", "ClientContext": "{}"});
            node.app.scf("Invoke", params).await.ok().filter(|r| r["Result"]["InvokeResult"] == 0)
        })
        .await;
    }
    let c = &nodes[2];
    eventually("every node's invocation is in the logs", Duration::from_secs(10), || async {
        let logs = c.app.scf("GetFunctionLogs", json!({"FunctionName": "cluster-napper", "Limit": 100})).await.ok()?;
        let sources: Vec<&str> = logs["Data"].as_array()?.iter().filter_map(|r| r["Source"].as_str()).collect();
        ["jobs-a", "jobs-b", "jobs-c"].iter().all(|n| sources.contains(n)).then_some(())
    })
    .await;

    // Jobs queued on A run there; A is killed while running them; others take them over within 10 s.
    const JOBS: usize = 3;
    let mut ids = Vec::new();
    for _ in 0..JOBS {
        let params =
            json!({"FunctionName": "cluster-napper", "InvocationType": "Event", "ClientContext": "{\"seconds\": 4}"});
        let queued = nodes[0].app.scf("Invoke", params).await.unwrap();
        ids.push(queued["Result"]["FunctionRequestId"].as_str().unwrap().to_string());
    }
    let running_on = |node: &str| {
        pg.sql(&format!(
            "SELECT COUNT(*) FROM fnlb.async_invocations WHERE state = 'running' AND lease_owner = '{node}'"
        ))
    };
    eventually("A runs jobs", Duration::from_secs(10), || async { (running_on("jobs-a") != "0").then_some(()) }).await;
    let [a, b, c]: [Node; 3] = nodes.try_into().ok().expect("three nodes");
    let killed = Instant::now();
    drop(a.app.kill_9());
    eventually("the killed node's jobs run elsewhere", Duration::from_secs(10), || async {
        (running_on("jobs-a") == "0").then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    assert!(takeover < Duration::from_secs(10), "took {takeover:?}");
    // Every acknowledged invocation ran to its end (at least once), and any node reports it.
    for id in &ids {
        eventually(&format!("job {id} is done"), Duration::from_secs(30), || async {
            let params = json!({"FunctionName": "cluster-napper", "FunctionRequestId": id});
            let status = c.app.scf("GetRequestStatus", params).await.ok()?;
            (status["Data"][0]["RetCode"] == 0).then_some(())
        })
        .await;
    }
    // The logs read on C show the jobs' runs on the nodes that took them over.
    eventually("the jobs' runs are in the logs", Duration::from_secs(10), || async {
        let logs = c.app.scf("GetFunctionLogs", json!({"FunctionName": "cluster-napper", "Limit": 100})).await.ok()?;
        let runs: Vec<&Value> = logs["Data"]
            .as_array()?
            .iter()
            .filter(|r| r["Log"].as_str().is_some_and(|l| l.contains("slept 4")))
            .collect();
        let elsewhere = runs.iter().all(|r| r["Source"] == "jobs-b" || r["Source"] == "jobs-c");
        (runs.len() >= JOBS && elsewhere).then_some(())
    })
    .await;
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_nodes_state_copied_into_postgres_serves_on_a_cluster_node() {
    let root = tempfile::tempdir().unwrap();
    let single_dir = root.path().join("single");
    let single = TestApp::start_in(&single_dir, &[]);
    single.create_fixture("copied-echo", "echo", json!({})).await.unwrap();
    let port = free_port();
    let (lb, ..) = route(&single, "copied-echo", port).await;
    let credentials = single.credentials.clone();
    assert!(single.terminate(Duration::from_secs(30)), "the single node stops cleanly");

    let pg = Pg::start();
    let copy = |to: String| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fnlb"));
        command.args(["store", "copy", "--from"]).arg(&single_dir).args(["--to", &to]);
        command.output().expect("fnlb store copy runs")
    };
    let copied = copy(pg.url());
    let said = String::from_utf8_lossy(&copied.stdout);
    assert!(copied.status.success(), "{said}{}", String::from_utf8_lossy(&copied.stderr));
    assert!(said.starts_with("Copied and verified:"), "{said}");
    // A database that already holds a state is refused, and left as it was.
    let head = pg.sql("SELECT version FROM fnlb.head");
    let again = copy(pg.url());
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a state"));
    assert_eq!(pg.sql("SELECT version FROM fnlb.head"), head);

    // A cluster node on the database serves what the single node served, with the same account.
    let node = start_nodes(&pg, root.path(), &["copied-a"]).pop().unwrap();
    assert_eq!(node.app.credentials.secret_id, credentials.secret_id);
    assert_eq!(node.app.credentials.secret_key, credentials.secret_key);
    eventually("the copied rule serves on the cluster node", Duration::from_secs(15), || async {
        (status_via(&node, port).await == 200).then_some(())
    })
    .await;
    let described = node.app.clb("DescribeLoadBalancers", json!({"LoadBalancerIds": [lb]})).await.unwrap();
    assert_eq!(described["TotalCount"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_concurrency_holds_for_the_cluster_and_provisioned_instances_spread_over_it() {
    let pg = Pg::start();
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), &["limit-a", "limit-b", "limit-c"]);
    let code = function_dir(
        root.path(),
        "import time\n\ndef main_handler(event, context):\n    start = time.time()\n    time.sleep(0.4)\n    \
         return {'start': start, 'end': time.time()}\n",
    );
    let a = &nodes[0].app;
    a.create_from_dir("cluster-limited", &code, json!({"MemorySize": 128, "Timeout": 10})).await.unwrap();
    // Two invocations at once, for the whole cluster.
    a.scf("PutReservedConcurrencyConfig", json!({"FunctionName": "cluster-limited", "ReservedConcurrencyMem": 256}))
        .await
        .unwrap();
    for node in &nodes {
        eventually(&format!("{} serves the reservation", node.id), Duration::from_secs(10), || async {
            let got =
                node.app.scf("GetReservedConcurrencyConfig", json!({"FunctionName": "cluster-limited"})).await.ok()?;
            (got["ReservedMem"] == 256).then_some(())
        })
        .await;
    }

    // Invocations on every node at once: the executions seen never overlap more than the reservation allows.
    let calls: Vec<_> = (0..12)
        .map(|i| {
            let client = nodes[i % 3].app.client();
            tokio::spawn(async move {
                let params = json!({"FunctionName": "cluster-limited", "ClientContext": "{}"});
                let answer = client.call(fnlb::api::Service::Scf, "Invoke", params).await.ok()?;
                let ran: Value = serde_json::from_str(answer["Result"]["RetMsg"].as_str()?).ok()?;
                Some((ran["start"].as_f64()?, ran["end"].as_f64()?))
            })
        })
        .collect();
    let mut ran = Vec::new();
    for call in calls {
        ran.extend(call.await.unwrap());
    }
    assert!(ran.len() >= 2, "only {} invocations ran", ran.len());
    let mut edges: Vec<(f64, i32)> = ran.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
    edges.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let (mut now, mut most) = (0, 0);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    assert!(most <= 2, "{most} invocations ran at once under a reservation of two: {ran:?}");
    // The shares the nodes hold never add up to more than the reservation.
    let mut shares = 0.0;
    for node in &nodes {
        let metrics = crate::harness::get(&format!("http://{}/metrics", node.app.admin_addr)).await.text();
        let line = metrics.lines().find(|l| l.starts_with("fnlb_function_reserved_share_mb{")).unwrap_or("x 0");
        shares += line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
    }
    assert!(shares <= 256.0, "the nodes hold {shares} MB of 256");

    // Provisioned concurrency is spread over the live nodes: three instances, one on each.
    a.create_from_dir("cluster-provisioned", &code, json!({"MemorySize": 128})).await.unwrap();
    a.scf("PublishVersion", json!({"FunctionName": "cluster-provisioned"})).await.unwrap();
    let put = json!({"FunctionName": "cluster-provisioned", "Qualifier": "1", "VersionProvisionedConcurrencyNum": 3});
    a.scf("PutProvisionedConcurrencyConfig", put).await.unwrap();
    for node in &nodes {
        eventually(&format!("{} reports the cluster's three instances", node.id), Duration::from_secs(20), || async {
            let got = node
                .app
                .scf("GetProvisionedConcurrencyConfig", json!({"FunctionName": "cluster-provisioned"}))
                .await
                .ok()?;
            let allocated = &got["Allocated"][0];
            (allocated["AvailableProvisionedConcurrencyNum"] == 3 && allocated["Status"] == "Done").then_some(())
        })
        .await;
    }
    let spread = pg.sql("SELECT string_agg(node || '=' || warm, ',' ORDER BY node) FROM fnlb.provisioned_warm");
    assert_eq!(spread, "limit-a=1,limit-b=1,limit-c=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_workflow_through_tccli_with_each_step_on_another_node() {
    use crate::conformance::{ok, tccli};
    let pg = Pg::start();
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), &["seed-a", "seed-b", "seed-c"]);
    let (a, b, c) = (&nodes[0].app, &nodes[1].app, &nodes[2].app);
    let dir = root.path().join("hello");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-clb/index.py"), dir.join("index.py"))
        .unwrap();
    let zip = fnlb::functions::zip_dir(&dir).unwrap();
    let code = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, zip);
    let create = json!({"FunctionName": "hello-clb", "Runtime": "Python3.6", "Handler": "index.main_handler",
        "Code": {"ZipFile": code}});
    ok(a, "scf", "CreateFunction", create).await;
    eventually("the function is Active on C", Duration::from_secs(30), || async {
        let function = tccli(c, "scf", "GetFunction", json!({"FunctionName": "hello-clb"})).await.ok()?;
        (function["Status"] == "Active").then_some(())
    })
    .await;

    let (vip, _) = free_addr();
    let port = free_port();
    let lb = ok(b, "clb", "CreateLoadBalancer", json!({"LoadBalancerType": "OPEN", "Vip": vip.to_string()})).await;
    let lb = lb["LoadBalancerIds"][0].as_str().unwrap().to_string();
    let listener = json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": "HTTP", "ListenerNames": ["web"]});
    let listener = ok(c, "clb", "CreateListener", listener).await["ListenerIds"][0].as_str().unwrap().to_string();
    let rule = json!({"LoadBalancerId": lb, "ListenerId": listener, "Rules": [{"Domain": "fnlb.test", "Url": "/"}]});
    let location = ok(a, "clb", "CreateRule", rule).await["LocationIds"][0].as_str().unwrap().to_string();
    let target = json!([{"Function": {"FunctionNamespace": "default", "FunctionName": "hello-clb",
        "FunctionQualifier": "$LATEST"}, "Weight": 10}]);
    let bind = json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationId": location, "FunctionTargets": target});
    let bound = ok(b, "clb", "RegisterFunctionTargets", bind.clone()).await;
    // The task is done once every node serves the binding.
    eventually("the binding's task is done", Duration::from_secs(10), || async {
        let task = ok(c, "clb", "DescribeTaskStatus", json!({"TaskId": bound["RequestId"]})).await;
        (task["Status"] == 0).then_some(())
    })
    .await;
    let triggers = ok(a, "scf", "ListTriggers", json!({"FunctionName": "hello-clb"})).await;
    assert_eq!(triggers["TotalCount"], 1, "{triggers}");
    for node in &nodes {
        let page = try_request("GET", &format!("http://{}:{port}/", node.address), &[("host", "fnlb.test")], "")
            .await
            .unwrap();
        assert_eq!((page.status, page.text().as_str()), (200, "<html><body><h1>Hello CLB</h1></body></html>"));
    }

    // Unbound, deleted and gone, each step on another node; every node agrees.
    ok(c, "clb", "DeregisterFunctionTargets", bind).await;
    assert_eq!(ok(a, "scf", "ListTriggers", json!({"FunctionName": "hello-clb"})).await["TotalCount"], 0);
    ok(b, "clb", "DeleteRule", json!({"LoadBalancerId": lb, "ListenerId": listener, "LocationIds": [location]})).await;
    ok(c, "clb", "DeleteListener", json!({"LoadBalancerId": lb, "ListenerId": listener})).await;
    ok(a, "clb", "DeleteLoadBalancer", json!({"LoadBalancerIds": [lb]})).await;
    ok(b, "scf", "DeleteFunction", json!({"FunctionName": "hello-clb"})).await;
    for node in [a, b, c] {
        eventually("every node shows nothing left", Duration::from_secs(10), || async {
            let functions = ok(node, "scf", "ListFunctions", json!({})).await["TotalCount"].clone();
            let lbs = ok(node, "clb", "DescribeLoadBalancers", json!({})).await["TotalCount"].clone();
            (functions == 0 && lbs == 0).then_some(())
        })
        .await;
    }
    let failure = tccli(c, "scf", "GetFunction", json!({"FunctionName": "hello-clb"})).await.unwrap_err();
    assert!(failure.stderr.contains("code:ResourceNotFound.Function"), "{failure:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_changes_the_log_no_longer_holds_reloads_the_whole_state() {
    use rustix::process::{Pid, Signal, kill_process};
    let pg = Pg::start();
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), &["behind-a", "behind-b"]);
    let (a, b) = (&nodes[0].app, &nodes[1].app);
    let pid = Pid::from_raw(b.pid() as i32).unwrap();
    // B sleeps while A changes the state and the change log is pruned past B's version.
    kill_process(pid, Signal::STOP).unwrap();
    a.scf("CreateNamespace", json!({"Namespace": "while-b-slept"})).await.unwrap();
    pg.sql("DELETE FROM fnlb.changes");
    kill_process(pid, Signal::CONT).unwrap();
    eventually("B serves the change it could not read from the log", Duration::from_secs(10), || async {
        let listed = b.scf("ListNamespaces", json!({"Limit": 100})).await.ok()?;
        let names: Vec<Value> = listed["Namespaces"].as_array()?.iter().map(|n| n["Name"].clone()).collect();
        names.contains(&json!("while-b-slept")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reach_the_database_over_tls_and_check_its_certificate() {
    let ca = crate::https::Authority::new("database CA");
    let leaf = ca.leaf(&["127.0.0.1"]);
    let pg = Pg::start_tls(&leaf.cert, &leaf.key);
    let root = tempfile::tempdir().unwrap();
    let ca_file = ca.write(root.path(), "ca.pem");
    let url = format!("{}?sslmode=require&sslrootcert={}", pg.url(), ca_file.display());
    let (address, _) = free_addr();
    let node = start_node(&root.path().join("tls-a"), &url, "tls-a", address);
    node.scf("CreateNamespace", json!({"Namespace": "over-tls"})).await.unwrap();
    let encrypted = pg.sql(
        "SELECT bool_and(s.ssl) AND COUNT(*) > 0 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name = 'fnlb tls-a'",
    );
    assert_eq!(encrypted, "t", "every connection of the node is encrypted");

    // `sslmode=require` alone encrypts without checking whose certificate it is, as libpq does.
    let url = format!("{}?sslmode=require", pg.url());
    let (address, _) = free_addr();
    let unchecked = start_node(&root.path().join("tls-c"), &url, "tls-c", address);
    unchecked.scf("ListNamespaces", json!({})).await.unwrap();
    let encrypted = pg.sql(
        "SELECT bool_and(s.ssl) AND COUNT(*) > 0 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name = 'fnlb tls-c'",
    );
    assert_eq!(encrypted, "t");

    // A database whose certificate the given authority did not sign is not trusted.
    let other = crate::https::Authority::new("another CA");
    let other_file = other.write(root.path(), "other.pem");
    let url = format!("{}?sslmode=require&sslrootcert={}", pg.url(), other_file.display());
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_fnlb"))
        .args(["serve", "--api-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--store", &url])
        .arg("--data-dir")
        .arg(root.path().join("tls-b"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("cannot be reached") && said.contains("no copy"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_change_replayed_to_another_node_is_carried_out_once_and_answered_as_the_first() {
    use crate::harness::{sdk_signed, send_from};
    let pg = Pg::start();
    let root = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&pg, root.path(), &["replay-a", "replay-b"]);
    let (a, b) = (&nodes[0].app, &nodes[1].app);
    // A CreateLoadBalancer signed for A (as the SDKs sign: the action is not signed), sent to A, then replayed to B
    // with the same head and body, from the signer's address and from another.
    let params = json!({"LoadBalancerType": "OPEN", "LoadBalancerName": "once-in-the-cluster"});
    let (headers, body) = sdk_signed(a, "clb", "CreateLoadBalancer", &params);
    let first = send_from(a, [127, 0, 0, 1], &headers, &body).await;
    assert!(first["LoadBalancerIds"][0].is_string(), "{first}");
    assert_eq!(send_from(b, [127, 0, 0, 1], &headers, &body).await, first, "B answers with A's answer");
    assert_eq!(send_from(b, [127, 0, 0, 2], &headers, &body).await, first, "from another address too");
    assert_eq!(send_from(a, [127, 0, 0, 1], &headers, &body).await, first, "and A again");

    // One load balancer, on every node.
    for node in [a, b] {
        eventually("the load balancer shows", Duration::from_secs(10), || async {
            let made = node.clb("DescribeLoadBalancers", json!({"LoadBalancerName": "once-in-the-cluster"})).await;
            (made.ok()?["TotalCount"] == 1).then_some(())
        })
        .await;
    }
    // Every change is committed before it is answered: the database holds what each node made.
    let stored =
        "SELECT COUNT(*) FROM fnlb.entities WHERE kind = 'load_balancer' AND body LIKE '%once-in-the-cluster%'";
    assert_eq!(pg.sql(stored), "1");
    assert_eq!(pg.sql("SELECT COUNT(*) FROM fnlb.signatures WHERE used_for LIKE 'clb/CreateLoadBalancer/%'"), "1");
}
