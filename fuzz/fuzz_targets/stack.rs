#![no_main]
//! The stack file of `fnlb apply` (`cli::apply::stack::Stack::parse`; docs/apply.md): any text is read or
//! refused with a place and a reason, without panicking or hanging (YAML anchors and aliases included). A stack
//! that is read holds what its checks promise: a plain name, functions named once each, load balancers named
//! once each, listeners on distinct ports with known protocols, rules named once per listener.

use std::collections::HashSet;
use std::path::PathBuf;

use fnlb::cli::apply::stack::Stack;
use libfuzzer_sys::fuzz_target;

fn base() -> PathBuf {
    // A directory with the `code` directory the corpus's functions name, and a certificate and key file.
    let dir = std::env::temp_dir().join(format!("fnlb-fuzz-stack-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("code")).expect("a scratch directory");
    for file in ["cert.pem", "key.pem"] {
        std::fs::write(dir.join(file), "x").expect("a scratch file");
    }
    dir
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static BASE: PathBuf = base();
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = BASE.with(|base| Stack::parse(text, "stack.yaml", base));
    let stack = match parsed {
        Ok(stack) => stack,
        Err(error) => {
            assert_eq!(error.file, "stack.yaml");
            assert!(!error.place.is_empty() && !error.reason.is_empty(), "{error}");
            return;
        }
    };
    assert!(!stack.name.is_empty() && stack.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)));
    let mut functions = HashSet::new();
    for function in &stack.functions {
        assert!(functions.insert((&function.namespace, &function.name)));
        assert!(function.code.is_dir());
    }
    let mut balancers = HashSet::new();
    for lb in &stack.load_balancers {
        assert!(balancers.insert(&lb.name));
        let mut ports = HashSet::new();
        for listener in &lb.listeners {
            assert!(fnlb::cli::LISTENER_PROTOCOLS.contains(&listener.protocol.as_str()));
            assert!(ports.insert((listener.protocol == "UDP", listener.port)));
            let mut rules = HashSet::new();
            for rule in &listener.rules {
                assert!(rules.insert((rule.domain.to_ascii_lowercase(), &rule.url)));
            }
        }
    }
});
