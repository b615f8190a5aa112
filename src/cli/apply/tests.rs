use std::collections::HashMap;

use super::{access_path, access_paths};

#[test]
fn a_rule_is_reached_at_the_vip_with_its_domain_as_host() {
    assert_eq!(access_path("HTTP", "127.0.0.1", 8080, "127.0.0.1", "/"), "http://127.0.0.1:8080/");
    assert_eq!(
        access_path("HTTPS", "127.0.0.10", 8443, "shop.example.com", "/api"),
        "https://127.0.0.10:8443/api (Host: shop.example.com)"
    );
    assert_eq!(
        access_path("HTTP", "::1", 80, "*.example.com", "~* ^/img"),
        "http://[::1]:80/ (URL matching ~* ^/img, Host matching *.example.com)"
    );
    assert_eq!(access_path("HTTP", "127.0.0.1", 80, "a.test", "= /exact"), "http://127.0.0.1:80/exact (Host: a.test)");
}

#[test]
fn every_rule_of_the_stack_is_listed_with_what_answers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("code")).unwrap();
    let file = dir.path().join("stack.yaml");
    std::fs::write(
        &file,
        "name: s
functions: [{name: web, code: code}]
loadBalancers:
  - name: lb
    listeners:
      - protocol: HTTP
        port: 8080
        rules:
          - {domain: fn.test, url: /, function: web}
          - {domain: servers.test, url: /, targets: [{ip: 127.0.0.1, port: 9001}], fallback: web}
      - protocol: HTTP
        port: 8081
        rules:
          - {domain: fn.test, url: /, redirect: {protocol: HTTP, port: 8080}}
      - {protocol: TCP, port: 9000, targets: [{ip: 127.0.0.1, port: 5432}]}
",
    )
    .unwrap();
    let stack = super::Stack::load(&file).unwrap();
    let vips = HashMap::from([(0, "127.0.0.2".to_string())]);
    assert_eq!(
        access_paths(&stack, &vips),
        "Access paths:
  http://127.0.0.2:8080/ (Host: fn.test) → function default/web:$LATEST
  http://127.0.0.2:8080/ (Host: servers.test) → 127.0.0.1:9001, fallback function default/web:$LATEST
  http://127.0.0.2:8081/ (Host: fn.test) → redirect to HTTP 8080
"
    );
    std::fs::write(&file, "name: s\n").unwrap();
    let no_rules = super::Stack::load(&file).unwrap();
    assert_eq!(access_paths(&no_rules, &vips), "");
}
