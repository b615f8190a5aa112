//! Wiring: open the store, restore the state, start the API, the load balancer and the function engine, run
//! until asked to stop, then drain.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{Api, Service};
use crate::client::{Client, ClientError, Credentials, Trust};
use crate::config::Config;
use crate::control::Control;
use crate::functions::Engine;
use crate::functions::limits::Cgroups;
use crate::functions::network::FunctionNetwork;
use crate::functions::queue::AsyncQueue;
use crate::functions::runtimes::Runtimes;
use crate::functions::sandbox::Sandbox;
use crate::proxy::{Proxy, Sockets};
use crate::state::{Account, AccountKind, Command, State};
use crate::store::{Loaded, Postgres, Sqlite, Store};

/// How long fnlb waits at exit for the kernel to let its emptied cgroups be removed.
const CGROUP_REMOVAL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The embedded example: the seed's function, byte for byte.
pub const EXAMPLE_CODE: &[u8] = include_bytes!("../examples/hello-clb/index.py");
pub const EXAMPLE_NAME: &str = "hello-clb";

/// Runs fnlb until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    // The API's certificate is checked before anything starts.
    let tls = match &config.api.tls {
        Some(files) => Some(files.load()?),
        None => None,
    };
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict the data directory {}", data_dir.display()))?;
    // Absolute from here on: sandboxes and runtimes start in other directories (`./fnlb-data` is the default).
    let absolute =
        data_dir.canonicalize().with_context(|| format!("cannot resolve the data directory {}", data_dir.display()))?;
    let data_dir = &absolute;
    let (store, loaded) = open_store(&config, data_dir).await?;
    let version = loaded.version;
    let state = State::restore(config.limits.clone(), loaded.entities);
    let control = Arc::new(Control::new(state, version, store.clone()));
    let account = ensure_account(&control).await?;
    if let Some(path) = &config.accounts_file {
        match crate::accounts::apply(&control, path).await {
            Ok(count) => tracing::info!(count, file = %path.display(), "Accounts configured."),
            // A cluster node started while the database is down serves the accounts it has.
            Err(e) if is_unreachable(&e) => {
                tracing::warn!(error = %e, file = %path.display(), "The accounts file is not applied: the store is unreachable.")
            }
            Err(e) => return Err(e),
        }
    }
    let credentials_path = write_credentials(data_dir, &account)?;
    println!("fnlb: credentials in {}", credentials_path.display());

    let sandbox = Sandbox::detect(config.sandbox)?;
    let network = FunctionNetwork::setup(config.function_egress)?;
    let runtimes = Runtimes::prepare(
        data_dir,
        config.interpreters.clone(),
        sandbox,
        Cgroups::detect(),
        network,
        config.function_uid_base,
    )?;
    let engine = Arc::new(Engine::new(config.engine.clone(), runtimes, data_dir, store.clone()));
    engine.start_zygotes();
    if let Store::Cluster(_) = &store {
        engine.join_cluster();
    }
    let (stop_tx, stop_rx) = watch::channel(false);

    if let Some(crate::proxy::access_log::Destination::Directory(dir)) =
        config.access_log.as_ref().map(|a| &a.destination)
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the access log directory {}", dir.display()))?;
    }
    let sockets = Arc::new(Sockets::new(config.listen_address));
    let health = Arc::new(crate::proxy::health::Health::default());
    let proxy = Arc::new(Proxy {
        snapshots: control.snapshots().clone(),
        functions: engine.clone(),
        settings: config.proxy.clone(),
        sockets: sockets.clone(),
        upstreams: crate::proxy::upstream::Upstreams::new(config.upstream.clone(), health.clone()),
        health: health.clone(),
        access_log: config.access_log.clone().map(crate::proxy::access_log::AccessLog::start),
    });
    let proxy_task = tokio::spawn(proxy.clone().run(stop_rx.clone()));
    // SIGHUP reopens the access log files (after an outside rotation); it never stops fnlb.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let reopen = proxy.clone();
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reopening the log files.");
            if let Some(log) = &reopen.access_log {
                log.reopen();
            }
        }
    });

    let queue =
        Arc::new(AsyncQueue::new(config.queue.clone(), store.clone(), control.snapshots().clone(), engine.clone()));
    let queue_task = tokio::spawn(queue.clone().run(stop_rx.clone()));
    let follow_task = tokio::spawn(crate::control::follow(control.clone(), stop_rx.clone()));
    let snapshots = control.snapshots().clone();
    tokio::spawn(engine.clone().collect_code(snapshots, config.code_retention, stop_rx.clone()));
    if let Store::Cluster(pg) = &store {
        if pg.settings.logs == crate::store::ClusterLogs::Shared {
            let (shipper, shipments) = tokio::sync::mpsc::channel(crate::functions::logs::SHIPPING_QUEUE);
            engine.logs.ship_to(pg.node_id(), shipper);
            let keep = engine.logs.per_function();
            tokio::spawn(crate::store::postgres::ship_logs(pg.clone(), shipments, keep, stop_rx.clone()));
        }
        let snapshots = control.snapshots().clone();
        tokio::spawn(crate::cluster::run(pg.clone(), engine.clone(), snapshots, stop_rx.clone()));
        tokio::spawn(crate::api::replay::prune_shared(pg.clone(), stop_rx.clone()));
    }

    let listener =
        TcpListener::bind(config.api_addr).await.with_context(|| format!("cannot listen on {}", config.api_addr))?;
    let api_addr = listener.local_addr()?;
    let api = Arc::new(Api {
        control: control.clone(),
        functions: engine.clone(),
        settings: config.api.clone(),
        sockets,
        queue,
        health,
        console: crate::console::Console::new(config.console.clone()),
        answered: Default::default(),
        guard: crate::api::guard::Guard::new(config.api.guard.clone()),
        replays: Default::default(),
        backoff: Default::default(),
        tls: tls.as_ref().map(|t| t.acceptor.clone()),
    });
    let api_task = tokio::spawn(api.clone().serve(listener, stop_rx.clone()));
    let api_url = format!("{}://{api_addr}", if tls.is_some() { "https" } else { "http" });
    println!("fnlb: API listening on {api_url}");
    let admin_listener = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("cannot listen on {} (the admin address)", config.admin_addr))?;
    let admin_addr = admin_listener.local_addr()?;
    let admin = Arc::new(crate::admin::Admin::new(api.clone(), data_dir.clone()));
    let admin_task = tokio::spawn(admin.clone().serve(admin_listener, stop_rx.clone()));
    println!("fnlb: admin listening on http://{admin_addr}");
    // Ready once the listeners of the state as restored are bound.
    let current = control.snapshot().version;
    if control.snapshots().wait_in_effect(current, config.api.apply_timeout).await {
        admin.set_ready();
    } else {
        tracing::warn!("The listeners were not all bound in time; /ready stays unready until restart.");
    }
    tracing::info!(%api_addr, data_dir = %data_dir.display(), "fnlb started.");

    if let Some(port) = config.example_port {
        let credentials = Credentials { secret_id: account.secret_id.clone(), secret_key: account.secret_key.clone() };
        // This node's own certificate is trusted whatever names it holds: the example is deployed to itself.
        let trust = match &tls {
            Some(tls) => Trust::Exactly(tls.certificate.clone()),
            None => Trust::System { extra: None },
        };
        let client = Client::with_trust(&api_url, credentials, &config.region, trust)?;
        match deploy_example(&client, port).await {
            Ok(path) => println!("fnlb: example {EXAMPLE_NAME} deployed; open {path}"),
            Err(e) => eprintln!("fnlb: the example could not be deployed: {e}"),
        }
    }

    shutdown.await;
    tracing::info!("Stopping: draining connections.");
    let _ = stop_tx.send(true);
    let _ = api_task.await;
    let _ = admin_task.await;
    let _ = proxy_task.await;
    let _ = queue_task.await;
    let _ = follow_task.await;
    // Instances are stopped, then the cgroups they ran in removed.
    engine.stop_all();
    let limits = engine.runtimes().limits.clone();
    let removed = tokio::task::spawn_blocking(move || limits.remove_own(CGROUP_REMOVAL_PATIENCE)).await;
    if !matches!(removed, Ok(true)) {
        tracing::warn!("fnlb's cgroups could not all be removed; the next start removes them.");
    }
    tracing::info!("fnlb stopped.");
    Ok(())
}

/// Opens the configured store and reads the state to serve. A cluster node that cannot reach the database
/// within `START_TIMEOUT` serves the copy it kept in its data directory, and catches up once the database answers.
async fn open_store(config: &Config, data_dir: &Path) -> anyhow::Result<(Store, Loaded)> {
    let Some(cluster) = &config.cluster else {
        let db = Arc::new(Sqlite::open(&data_dir.join("fnlb.sqlite3"))?);
        let loaded = db.load()?;
        return Ok((Store::Embedded(db), loaded));
    };
    let pg = Arc::new(Postgres::new(cluster.clone(), data_dir)?);
    let loaded = match tokio::time::timeout(crate::control::START_TIMEOUT, pg.load()).await {
        Ok(Ok(loaded)) => {
            pg.copy().replace_all(&loaded.entities, loaded.version)?;
            if let Err(e) = pg.register(loaded.version).await {
                tracing::warn!(error = %e, "This node could not register with the cluster.");
            }
            tracing::info!(node = %cluster.node_id, version = loaded.version, "Joined the cluster.");
            loaded
        }
        outcome => {
            let why = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer".to_string(),
            };
            let copy = pg.copy().load()?;
            if copy.version <= 1 && copy.entities.is_empty() {
                anyhow::bail!("the store cannot be reached ({why}) and this node has no copy of the state to serve");
            }
            tracing::warn!(reason = %why, version = copy.version, "The store cannot be reached: serving this node's last copy of the state.");
            copy
        }
    };
    Ok((Store::Cluster(pg), loaded))
}

/// Whether an error is the store being unreachable.
fn is_unreachable(e: &anyhow::Error) -> bool {
    use crate::control::ControlError;
    use crate::store::StoreError;
    matches!(e.downcast_ref::<ControlError>(), Some(ControlError::Store(StoreError::Unreachable(_))))
}

/// The first start creates an account: from `FNLB_SECRET_ID` / `FNLB_SECRET_KEY` when set, otherwise new. In a
/// cluster the first node to start makes it, and the others serve it.
async fn ensure_account(control: &Control) -> anyhow::Result<Account> {
    let made = |state: &State| state.accounts.values().find(|a| !a.configured).cloned();
    if let Some(account) = made(&control.snapshot().state) {
        return Ok(account);
    }
    let (secret_id, secret_key) = match (std::env::var("FNLB_SECRET_ID"), std::env::var("FNLB_SECRET_KEY")) {
        (Ok(id), Ok(key)) if !id.is_empty() && !key.is_empty() => (id, key),
        _ => crate::ids::new_credentials(),
    };
    let account = Account {
        uin: crate::ids::random_digits(12),
        app_id: crate::ids::random_digits(10),
        secret_id,
        secret_key,
        kind: AccountKind::Standard,
        created_ms: crate::clock::now_ms(),
        configured: false,
        disabled: false,
    };
    let first = account.clone();
    control.apply_with(move |state| made(state).is_none().then(|| Command::PutAccount(first.clone())), None).await?;
    made(&control.snapshot().state).ok_or_else(|| anyhow::anyhow!("the first account was not made"))
}

/// Writes `credentials.json` (mode 0600): `{"secretId","secretKey","appId","uin"}`.
fn write_credentials(data_dir: &Path, account: &Account) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let path = data_dir.join("credentials.json");
    let body = json!({
        "secretId": account.secret_id,
        "secretKey": account.secret_key,
        "appId": account.app_id,
        "uin": account.uin,
    });
    let tmp = data_dir.join(".credentials.json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(serde_json::to_string_pretty(&body)?.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Deploys the Hello CLB example through the API, reusing what a previous start deployed; returns its access path.
pub async fn deploy_example(client: &Client, port: u16) -> Result<String, ClientError> {
    use base64::Engine as _;
    let scf = |action: &'static str, params: serde_json::Value| client.call(Service::Scf, action, params);
    let function = scf("GetFunction", json!({"FunctionName": EXAMPLE_NAME})).await;
    match function {
        Ok(_) => {}
        Err(ClientError::Api { code, .. }) if code.starts_with("ResourceNotFound") => {
            let zip = crate::functions::zip_files(&[("index.py", EXAMPLE_CODE)]);
            let zip = base64::engine::general_purpose::STANDARD.encode(zip);
            scf(
                "CreateFunction",
                json!({
                    "FunctionName": EXAMPLE_NAME,
                    "Runtime": "Python3.6",
                    "Handler": "index.main_handler",
                    "Description": "The Hello CLB example",
                    "Code": {"ZipFile": zip},
                }),
            )
            .await?;
        }
        Err(e) => return Err(e),
    }
    let clb = |action: &'static str, params: serde_json::Value| client.call(Service::Clb, action, params);
    let lbs = clb("DescribeLoadBalancers", json!({"LoadBalancerName": EXAMPLE_NAME})).await?;
    let lb_id = match lbs["LoadBalancerSet"].get(0).and_then(|lb| lb["LoadBalancerId"].as_str()) {
        Some(id) => id.to_string(),
        None => {
            let created =
                clb("CreateLoadBalancer", json!({"LoadBalancerType": "OPEN", "LoadBalancerName": EXAMPLE_NAME}))
                    .await?;
            created["LoadBalancerIds"][0].as_str().unwrap_or_default().to_string()
        }
    };
    let listeners =
        clb("DescribeListeners", json!({"LoadBalancerId": lb_id, "Protocol": "HTTP", "Port": port})).await?;
    let listener_id = match listeners["Listeners"].get(0).and_then(|l| l["ListenerId"].as_str()) {
        Some(id) => id.to_string(),
        None => {
            let created = clb(
                "CreateListener",
                json!({"LoadBalancerId": lb_id, "Ports": [port], "Protocol": "HTTP", "ListenerNames": ["hello-clb-http"]}),
            )
            .await?;
            created["ListenerIds"][0].as_str().unwrap_or_default().to_string()
        }
    };
    let triggers = scf("ListTriggers", json!({"FunctionName": EXAMPLE_NAME})).await?;
    let bound_here = triggers["Triggers"].as_array().into_iter().flatten().find_map(|t| {
        let desc: serde_json::Value = serde_json::from_str(t["TriggerDesc"].as_str()?).ok()?;
        (desc["listenerId"] == listener_id.as_str()).then(|| desc["accessPath"].as_str().map(str::to_string)).flatten()
    });
    if let Some(path) = bound_here {
        return Ok(path);
    }
    let rule = json!({"LoadBalancerId": lb_id, "ListenerId": listener_id, "Rules": [{"Url": "/"}]});
    let location_id = match clb("CreateRule", rule).await {
        Ok(created) => created["LocationIds"][0].as_str().unwrap_or_default().to_string(),
        Err(ClientError::Api { code, .. }) if code == "InvalidParameter" => {
            let listed =
                clb("DescribeListeners", json!({"LoadBalancerId": lb_id, "ListenerIds": [listener_id]})).await?;
            listed["Listeners"][0]["Rules"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["Url"] == "/")
                .and_then(|r| r["LocationId"].as_str())
                .unwrap_or_default()
                .to_string()
        }
        Err(e) => return Err(e),
    };
    clb(
        "RegisterFunctionTargets",
        json!({
            "LoadBalancerId": lb_id,
            "ListenerId": listener_id,
            "LocationId": location_id,
            "FunctionTargets": [{"Function": {"FunctionNamespace": "default", "FunctionName": EXAMPLE_NAME, "FunctionQualifier": "$LATEST"}, "Weight": 10}],
        }),
    )
    .await?;
    let triggers = scf("ListTriggers", json!({"FunctionName": EXAMPLE_NAME})).await?;
    let path = triggers["Triggers"].as_array().into_iter().flatten().find_map(|t| {
        let desc: serde_json::Value = serde_json::from_str(t["TriggerDesc"].as_str()?).ok()?;
        (desc["locationId"] == location_id.as_str()).then(|| desc["accessPath"].as_str().map(str::to_string)).flatten()
    });
    path.ok_or_else(|| ClientError::BadResponse("the example's trigger is missing after binding".to_string()))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
