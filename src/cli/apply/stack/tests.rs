use super::{Stack, without_place};

/// What loading a stack file says is wrong with it.
fn refused(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("code")).unwrap();
    let file = dir.path().join("stack.yaml");
    std::fs::write(&file, text).unwrap();
    let error = Stack::load(&file).unwrap_err();
    assert_eq!(error.file, file.display().to_string());
    format!("{}: {}", error.place, error.reason)
}

#[test]
fn an_unknown_field_with_an_empty_name_is_placed_at_the_top_level() {
    let empty = refused("name: s\n\"\": 1\n");
    assert!(empty.starts_with("the top level: unknown field ``"), "{empty}");
}

#[test]
fn a_file_error_names_its_place_once() {
    let unknown = refused("name: s\nfunctions:\n  - {name: f1, code: code, memroy: 128}\n");
    assert!(unknown.starts_with("functions[0].memroy: unknown field `memroy`, expected one of"), "{unknown}");
    let top = refused("name: s\nfoo: 1\n");
    assert!(top.starts_with("foo: unknown field `foo`"), "{top}");
    let wrong = refused("name: s\nloadBalancers:\n  - {name: lb, listeners: [{protocol: HTTP, port: eighty}]}\n");
    assert!(
        wrong.starts_with("loadBalancers[0].listeners[0].port: invalid type: string \"eighty\", expected a port"),
        "{wrong}"
    );
}

#[test]
fn what_the_api_would_refuse_is_found_in_the_file() {
    let port = refused("name: s\nloadBalancers:\n  - {name: lb, listeners: [{protocol: HTTP, port: 70000}]}\n");
    assert!(
        port.starts_with(
            "loadBalancers[0].listeners[0].port: invalid value: integer `70000`, expected a port, 1 to 65535"
        ),
        "{port}"
    );
    let zero = refused(
        "name: s\nloadBalancers:\n  - {name: lb, listeners: [{protocol: TCP, port: 80, targets: [{ip: 127.0.0.1, port: 0}]}]}\n",
    );
    assert!(zero.starts_with("loadBalancers[0].listeners[0].targets[0].port: invalid value: integer `0`"), "{zero}");
    let runtime = refused("name: s\nfunctions:\n  - {name: f1, code: code, runtime: Python2.7}\n");
    assert!(runtime.starts_with("functions[0] (f1).runtime: Python2.7 is not one of Python3.6, "), "{runtime}");
    assert!(runtime.contains("CustomRuntime"), "{runtime}");
    let memory = refused("name: s\nfunctions:\n  - {name: f1, code: code, memory: 100}\n");
    assert_eq!(
        memory,
        "functions[0] (f1).memory: 100 MB is not a memory size: 64, or 128 to 3072 in steps of 128 (MB)"
    );
    let timeout = refused("name: s\nfunctions:\n  - {name: f1, code: code, timeout: 901}\n");
    assert_eq!(timeout, "functions[0] (f1).timeout: 901 s is not 1 to 900 s");
    let handler = refused("name: s\nfunctions:\n  - {name: f1, code: code, handler: main}\n");
    assert!(handler.starts_with("functions[0] (f1).handler: Handler `main` is not valid: it must be"), "{handler}");
    let name = refused("name: s\nfunctions:\n  - {name: 9f, code: code}\n");
    assert!(name.starts_with("functions[0] (9f).name: FunctionName `9f` is not valid"), "{name}");
    let protocol = refused("name: s\nloadBalancers:\n  - {name: lb, listeners: [{protocol: QUIC, port: 443}]}\n");
    assert_eq!(
        protocol,
        "loadBalancers[0] (lb).listeners[0] (QUIC 443).protocol: QUIC is not one of HTTP, HTTPS, TCP, TCP_SSL, UDP"
    );
}

#[test]
fn only_the_place_the_error_names_is_taken_off() {
    assert_eq!(without_place("functions[0]: unknown field", "functions[0].memroy"), "unknown field");
    assert_eq!(without_place("name: invalid type", "name"), "invalid type");
    assert_eq!(without_place("invalid type: string", "port"), "invalid type: string");
    assert_eq!(without_place("functions: bad", "functionsX"), "functions: bad");
}
