use super::*;

fn scope() -> Scope {
    Scope { uin: "100".to_string(), region: "ap-guangzhou".to_string() }
}

fn account(kind: AccountKind) -> Command {
    Command::PutAccount(Account {
        uin: "100".to_string(),
        app_id: "1250000000".to_string(),
        secret_id: "AKIDx".to_string(),
        secret_key: "key".to_string(),
        kind,
        created_ms: 0,
        configured: false,
        disabled: false,
    })
}

fn function_key(name: &str) -> FunctionKey {
    FunctionKey { scope: scope(), namespace: DEFAULT_NAMESPACE.to_string(), name: name.to_string() }
}

fn create_function(name: &str, kind: FunctionType) -> Command {
    Command::CreateFunction(NewFunction {
        key: function_key(name),
        id: format!("lam-{name}"),
        runtime: "Python3.9".to_string(),
        handler: "index.main_handler".to_string(),
        kind,
        config: FunctionConfig {
            description: String::new(),
            memory_mb: 128,
            timeout_s: 3,
            init_timeout_s: 65,
            environment: vec![],
        },
        code: CodeRef { sha256: "abc".to_string(), size: 3 },
        tags: vec![],
        now: 1,
    })
}

fn create_lb(id: &str, vip: &str) -> Command {
    Command::CreateLoadBalancers(vec![NewLoadBalancer {
        scope: scope(),
        id: id.to_string(),
        name: id.to_string(),
        lb_type: LoadBalancerType::Open,
        forward: 1,
        ip_version: IpVersion::Ipv4,
        vip: Some(vip.to_string()),
        vpc_id: "vpc-default".to_string(),
        subnet_id: String::new(),
        project_id: 0,
        tags: vec![],
        now: 1,
    }])
}

fn create_listener(lb: &str, id: &str, protocol: Protocol, port: u16) -> Command {
    Command::CreateListeners {
        scope: scope(),
        lb_id: lb.to_string(),
        listeners: vec![NewListener::with_defaults(id.to_string(), id.to_string(), protocol, port)],
        now: 1,
    }
}

fn create_rule(lb: &str, listener: &str, id: &str, domain: &str, url: &str, now: i64) -> Command {
    Command::CreateRules {
        scope: scope(),
        lb_id: lb.to_string(),
        listener_id: listener.to_string(),
        rules: vec![NewRule::with_defaults(id.to_string(), domain.to_string(), url.to_string())],
        now,
    }
}

fn rule_ref(lb: &str, listener: &str, location: &str) -> RuleRef {
    RuleRef {
        scope: scope(),
        lb_id: lb.to_string(),
        listener_id: listener.to_string(),
        location_id: Some(location.to_string()),
        domain: None,
        url: None,
    }
}

fn target(name: &str) -> FunctionTarget {
    FunctionTarget {
        namespace: DEFAULT_NAMESPACE.to_string(),
        name: name.to_string(),
        qualifier: "$LATEST".to_string(),
        weight: 10,
        add_time: 0,
        trigger_name: None,
    }
}

fn bind(lb: &str, listener: &str, location: &str, name: &str) -> Command {
    Command::RegisterFunctionTargets { rule: rule_ref(lb, listener, location), targets: vec![target(name)], now: 5 }
}

/// An account, a function `f`, load balancer `lb-1` with HTTP listener `lbl-1` and rule `loc-1`.
fn base() -> State {
    let mut s = State::new(Limits::default());
    for c in [
        account(AccountKind::Standard),
        create_function("f", FunctionType::Event),
        create_lb("lb-1", "127.0.0.1"),
        create_listener("lb-1", "lbl-1", Protocol::Http, 80),
        create_rule("lb-1", "lbl-1", "loc-1", "a.com", "/", 1),
    ] {
        s.apply(c).unwrap();
    }
    s
}

#[test]
fn bind_and_list_bindings() {
    let mut s = base();
    let applied = s.apply(bind("lb-1", "lbl-1", "loc-1", "f")).unwrap();
    assert_eq!(applied.touched, vec![EntityKey::Rule("loc-1".to_string())]);
    let bindings = s.bindings_of(&function_key("f"));
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].2.function.as_ref().unwrap().add_time, 5);
}

#[test]
fn a_failed_command_changes_nothing() {
    let mut s = base();
    s.apply(bind("lb-1", "lbl-1", "loc-1", "f")).unwrap();
    s.apply(create_function("g", FunctionType::Event)).unwrap();
    let before = format!("{:?}", s.rules);
    assert!(matches!(s.apply(bind("lb-1", "lbl-1", "loc-1", "g")), Err(StateError::RuleHasFunction(..))));
    assert_eq!(format!("{:?}", s.rules), before);
}

#[test]
fn binding_restrictions() {
    let mut s = base();
    s.apply(create_listener("lb-1", "lbl-tcp", Protocol::Tcp, 81)).unwrap();
    assert!(matches!(s.apply(bind("lb-1", "lbl-tcp", "loc-1", "f")), Err(StateError::NotLayer7(..))));
    assert!(matches!(s.apply(bind("lb-1", "lbl-1", "loc-nope", "f")), Err(StateError::RuleNotFound(_))));
    assert!(matches!(s.apply(bind("lb-1", "lbl-1", "loc-1", "missing")), Err(StateError::TargetFunctionNotFound(_))));
    s.apply(create_function("web", FunctionType::Http)).unwrap();
    assert!(matches!(s.apply(bind("lb-1", "lbl-1", "loc-1", "web")), Err(StateError::WebFunction(_))));
    let mut other = target("f");
    other.qualifier = "7".to_string();
    let cmd =
        Command::RegisterFunctionTargets { rule: rule_ref("lb-1", "lbl-1", "loc-1"), targets: vec![other], now: 1 };
    assert!(matches!(s.apply(cmd), Err(StateError::QualifierNotFound { .. })));
}

#[test]
fn traditional_accounts_cannot_bind() {
    let mut s = base();
    s.apply(account(AccountKind::Traditional)).unwrap();
    assert!(matches!(s.apply(bind("lb-1", "lbl-1", "loc-1", "f")), Err(StateError::TraditionalAccount(_))));
}

#[test]
fn another_account_cannot_see_a_load_balancer() {
    let s = base();
    let other = Scope { uin: "200".to_string(), region: "ap-guangzhou".to_string() };
    assert!(matches!(s.load_balancer(&other, "lb-1"), Err(StateError::LoadBalancerNotFound(_))));
    let other_region = Scope { uin: "100".to_string(), region: "ap-shanghai".to_string() };
    assert!(s.load_balancer(&other_region, "lb-1").is_err());
}

#[test]
fn port_and_vip_clashes() {
    let mut s = base();
    assert!(matches!(
        s.apply(create_listener("lb-1", "lbl-2", Protocol::Https, 80)),
        Err(StateError::PortInUse { .. })
    ));
    s.apply(create_listener("lb-1", "lbl-udp", Protocol::Udp, 80)).unwrap();
    assert!(matches!(s.apply(create_lb("lb-2", "127.0.0.1")), Err(StateError::VipInUse(..))));
    s.apply(create_lb("lb-2", "127.0.0.2")).unwrap();
    s.apply(create_listener("lb-2", "lbl-3", Protocol::Http, 80)).unwrap();
}

#[test]
fn first_rule_domain_is_default_and_moves_when_deleted() {
    let mut s = base();
    s.apply(create_rule("lb-1", "lbl-1", "loc-2", "b.com", "/", 2)).unwrap();
    s.apply(create_rule("lb-1", "lbl-1", "loc-3", "c.com", "/", 3)).unwrap();
    assert_eq!(s.listeners["lbl-1"].default_domain.as_deref(), Some("a.com"));
    let delete = |ids: &[&str], new_default: Option<&str>| Command::DeleteRules {
        scope: scope(),
        lb_id: "lb-1".to_string(),
        listener_id: "lbl-1".to_string(),
        selector: RulesSelector::Ids(ids.iter().map(|s| s.to_string()).collect()),
        new_default_domain: new_default.map(str::to_string),
    };
    s.apply(delete(&["loc-1"], Some("c.com"))).unwrap();
    assert_eq!(s.listeners["lbl-1"].default_domain.as_deref(), Some("c.com"));
    s.apply(delete(&["loc-3"], None)).unwrap();
    assert_eq!(s.listeners["lbl-1"].default_domain.as_deref(), Some("b.com"), "the oldest remaining domain");
    s.apply(delete(&["loc-2"], None)).unwrap();
    assert_eq!(s.listeners["lbl-1"].default_domain, None);
}

#[test]
fn duplicate_rules_and_quota() {
    let mut s = base();
    assert!(matches!(
        s.apply(create_rule("lb-1", "lbl-1", "loc-x", "a.com", "/", 2)),
        Err(StateError::RuleExists { .. })
    ));
    s.limits.rules_per_listener = 2;
    s.apply(create_rule("lb-1", "lbl-1", "loc-2", "a.com", "/2", 2)).unwrap();
    assert!(matches!(
        s.apply(create_rule("lb-1", "lbl-1", "loc-3", "a.com", "/3", 3)),
        Err(StateError::RuleQuota { .. })
    ));
}

#[test]
fn deleting_a_function_unbinds_it_and_keeps_the_rule() {
    let mut s = base();
    s.apply(bind("lb-1", "lbl-1", "loc-1", "f")).unwrap();
    let applied = s.apply(Command::DeleteFunction { key: function_key("f") }).unwrap();
    assert!(applied.touched.contains(&EntityKey::Rule("loc-1".to_string())));
    assert!(s.rules["loc-1"].function.is_none());
}

#[test]
fn deleting_a_load_balancer_removes_listeners_and_rules() {
    let mut s = base();
    s.apply(Command::DeleteLoadBalancers { scope: scope(), ids: vec!["lb-1".to_string()] }).unwrap();
    assert!(s.listeners.is_empty() && s.rules.is_empty() && s.load_balancers.is_empty());
}

#[test]
fn deregister_needs_the_bound_function() {
    let mut s = base();
    s.apply(bind("lb-1", "lbl-1", "loc-1", "f")).unwrap();
    let cmd = |name: &str| Command::DeregisterFunctionTargets {
        rule: rule_ref("lb-1", "lbl-1", "loc-1"),
        targets: vec![target(name)],
    };
    assert!(matches!(s.apply(cmd("g")), Err(StateError::TargetNotBound { .. })));
    s.apply(cmd("f")).unwrap();
    assert!(s.rules["loc-1"].function.is_none());
}

#[test]
fn rule_by_domain_and_url_uses_the_default_domain() {
    let s = base();
    let mut r = rule_ref("lb-1", "lbl-1", "unused");
    r.location_id = None;
    r.url = Some("/".to_string());
    assert_eq!(s.resolve_rule(&r).unwrap(), "loc-1");
    r.domain = Some("b.com".to_string());
    assert!(s.resolve_rule(&r).is_err());
}

#[test]
fn restore_round_trips_through_entities() {
    let mut s = base();
    s.apply(bind("lb-1", "lbl-1", "loc-1", "f")).unwrap();
    let keys: Vec<EntityKey> = s
        .accounts
        .keys()
        .map(|k| EntityKey::Account(k.clone()))
        .chain(s.functions.keys().map(|k| EntityKey::Function(k.clone())))
        .chain(s.load_balancers.keys().map(|k| EntityKey::LoadBalancer(k.clone())))
        .chain(s.listeners.keys().map(|k| EntityKey::Listener(k.clone())))
        .chain(s.rules.keys().map(|k| EntityKey::Rule(k.clone())))
        .collect();
    let restored = State::restore(Limits::default(), keys.iter().filter_map(|k| s.entity(k)));
    assert_eq!(
        format!("{:?}{:?}{:?}", restored.functions, restored.listeners, restored.rules),
        format!("{:?}{:?}{:?}", s.functions, s.listeners, s.rules)
    );
}

#[test]
fn vips_are_given_out_in_order_and_batches_are_atomic() {
    let mut s = base(); // lb-1 holds 127.0.0.1
    let auto = |id: &str| {
        let Command::CreateLoadBalancers(mut lbs) = create_lb(id, "unused") else { unreachable!() };
        lbs[0].vip = None;
        lbs.remove(0)
    };
    s.apply(Command::CreateLoadBalancers(vec![auto("lb-2"), auto("lb-3")])).unwrap();
    assert_eq!(s.load_balancers["lb-2"].vip, "127.0.0.2");
    assert_eq!(s.load_balancers["lb-3"].vip, "127.0.0.3");
    let Command::CreateLoadBalancers(clash) = create_lb("lb-5", "127.0.0.2") else { unreachable!() };
    let batch = Command::CreateLoadBalancers(vec![auto("lb-4"), clash.into_iter().next().unwrap()]);
    assert!(matches!(s.apply(batch), Err(StateError::VipInUse(..))));
    assert!(!s.load_balancers.contains_key("lb-4"), "a refused batch creates nothing");
}

fn certificate(id: &str, kind: CertKind) -> Certificate {
    Certificate {
        id: id.to_string(),
        uin: scope().uin,
        name: id.to_string(),
        kind,
        cert_pem: "PEM".to_string(),
        key_pem: (kind == CertKind::Server).then(|| "KEY".to_string()),
        create_time: 1,
    }
}

fn https_listener(id: &str, port: u16, tls: Option<TlsSettings>) -> Command {
    let Command::CreateListeners { scope, lb_id, mut listeners, now } =
        create_listener("lb-1", id, Protocol::Https, port)
    else {
        unreachable!()
    };
    listeners[0].tls = tls;
    Command::CreateListeners { scope, lb_id, listeners, now }
}

fn tls(certs: &[&str], ca: Option<&str>, mutual: bool) -> TlsSettings {
    TlsSettings {
        mutual,
        verify_optional: false,
        cert_ids: certs.iter().map(|c| c.to_string()).collect(),
        ca_cert_id: ca.map(str::to_string),
    }
}

#[test]
fn listeners_use_certificates_that_exist_and_fit() {
    let mut s = base();
    assert!(matches!(s.apply(https_listener("lbl-s", 443, None)), Err(StateError::CertificateMissing(_))));
    // A certificate given inline is kept only if the listener that uses it is created.
    let refused = Command::Batch(vec![
        Command::PutCertificate(certificate("srv", CertKind::Server)),
        https_listener("lbl-s", 80, Some(tls(&["srv"], None, false))),
    ]);
    assert!(matches!(s.apply(refused), Err(StateError::PortInUse { .. })));
    assert!(s.certificates.is_empty());
    s.apply(Command::PutCertificate(certificate("srv", CertKind::Server))).unwrap();
    s.apply(Command::PutCertificate(certificate("ca", CertKind::Ca))).unwrap();
    assert!(matches!(
        s.apply(https_listener("lbl-s", 443, Some(tls(&["ca"], None, false)))),
        Err(StateError::CertificateKind { .. })
    ));
    assert!(matches!(
        s.apply(https_listener("lbl-s", 443, Some(tls(&["srv"], None, true)))),
        Err(StateError::CaMissing)
    ));
    assert!(matches!(
        s.apply(https_listener("lbl-s", 443, Some(tls(&["nope"], None, false)))),
        Err(StateError::CertificateNotFound(_))
    ));
    s.apply(https_listener("lbl-s", 443, Some(tls(&["srv"], Some("ca"), true)))).unwrap();
    let delete = |id: &str| Command::DeleteCertificate { uin: scope().uin, id: id.to_string() };
    assert!(matches!(s.apply(delete("ca")), Err(StateError::CertificateInUse { .. })));
    s.apply(Command::DeleteListener { scope: scope(), lb_id: "lb-1".into(), listener_id: "lbl-s".into() }).unwrap();
    s.apply(delete("ca")).unwrap();
    // Domain certificates belong to SNI listeners only.
    let modify = Command::ModifyDomain {
        scope: scope(),
        lb_id: "lb-1".into(),
        listener_id: "lbl-1".into(),
        domain: "a.com".into(),
        tls: Some(tls(&["srv"], None, false)),
        http2: None,
        default_server: false,
    };
    assert!(matches!(s.apply(modify), Err(StateError::TlsNotApplicable(..))));
}

fn fallback(location: &str, name: Option<&str>) -> Command {
    Command::SetRuleFallback { rule: rule_ref("lb-1", "lbl-1", location), fallback: name.map(target), now: 7 }
}

#[test]
fn a_server_rule_falls_back_to_a_function_under_the_binding_restrictions() {
    let mut s = base();
    s.apply(fallback("loc-1", Some("f"))).unwrap();
    assert_eq!(s.rules["loc-1"].fallback.as_ref().map(|t| t.add_time), Some(7));
    // A fallback is not a binding: the rule still forwards to servers, and no function can be bound to it.
    assert!(s.bindings_of(&function_key("f")).is_empty());
    assert!(matches!(s.apply(bind("lb-1", "lbl-1", "loc-1", "f")), Err(StateError::RuleHasFallback(_))));
    s.apply(create_function("web", FunctionType::Http)).unwrap();
    assert!(matches!(s.apply(fallback("loc-1", Some("web"))), Err(StateError::WebFunction(_))));
    assert!(matches!(s.apply(fallback("loc-1", Some("missing"))), Err(StateError::TargetFunctionNotFound(_))));
    // Removing it twice: the second time there is none.
    s.apply(fallback("loc-1", None)).unwrap();
    assert!(matches!(s.apply(fallback("loc-1", None)), Err(StateError::NoFallback(_))));
    // A rule bound to a function has no servers to fall back from.
    s.apply(bind("lb-1", "lbl-1", "loc-1", "f")).unwrap();
    assert!(matches!(s.apply(fallback("loc-1", Some("f"))), Err(StateError::RuleHasFunction(..))));
}

#[test]
fn deleting_a_function_removes_it_as_a_fallback() {
    let mut s = base();
    s.apply(fallback("loc-1", Some("f"))).unwrap();
    s.apply(Command::DeleteFunction { key: function_key("f") }).unwrap();
    assert_eq!(s.rules["loc-1"].fallback, None);
}
