#![no_main]
//! The layer-7 router (`snapshot::router::Router`) against a reference matcher written from the rules of
//! docs/load-balancer.md and the router's documentation, rule by rule in creation order:
//!
//! * the host loses its port (`name:digits`, `[v6]:digits`) and its case; domains compare without case;
//! * exact domains first; then `*suffix` domains (the host longer than the suffix and ending with it), the longest
//!   suffix winning; then `prefix*` domains likewise; then `~regex` domains (case-insensitive, compiled from the
//!   first rule that names the domain) in creation order; else the listener's default domain, else 404;
//! * within the domain: `= path` exact (the first such rule); a prefix rule whose URL is the path plus `/`
//!   answers a redirect to it; the longest prefix (the first created among equals) when it is `^~`; then `~` and
//!   `~*` regular expressions in creation order; then the longest prefix; else 404.
//!
//! Regular expressions that do not compile (or are too large) are left out by both.
//!
//! The input is text: the host, the path, the default domain (empty: none), then one rule a line as
//! `domain<TAB>url`.

use fnlb::snapshot::router::{Route, RouteRule, Router};
use libfuzzer_sys::fuzz_target;
use regex::{Regex, RegexBuilder};

fn compile(pattern: &str, caseless: bool) -> Option<Regex> {
    RegexBuilder::new(pattern).case_insensitive(caseless).size_limit(1 << 20).build().ok()
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn reference(rules: &[(&str, &str)], default: Option<&str>, host: &str, path: &str) -> Route {
    let host = strip_port(host).to_ascii_lowercase();
    let keys: Vec<String> = rules.iter().map(|(d, _)| d.to_ascii_lowercase()).collect();
    let exact = |k: &str| !k.starts_with('~') && !k.starts_with('*') && !k.ends_with('*');
    let longest = |pick: &dyn Fn(&str) -> Option<usize>| {
        keys.iter().filter_map(|k| pick(k).map(|len| (len, k))).max_by_key(|(len, _)| *len).map(|(_, k)| k.clone())
    };
    let domain = keys
        .iter()
        .find(|k| exact(k) && **k == host)
        .cloned()
        .or_else(|| {
            longest(&|k| {
                let suffix = k.strip_prefix('*').filter(|_| !k.starts_with('~'))?;
                (host.len() > suffix.len() && host.ends_with(suffix)).then_some(suffix.len())
            })
        })
        .or_else(|| {
            longest(&|k| {
                let prefix = k.strip_suffix('*').filter(|_| !k.starts_with('~') && !k.starts_with('*'))?;
                (host.len() > prefix.len() && host.starts_with(prefix)).then_some(prefix.len())
            })
        })
        .or_else(|| {
            let mut tried = Vec::new();
            for (i, key) in keys.iter().enumerate() {
                if !key.starts_with('~') || tried.contains(key) {
                    continue;
                }
                tried.push(key.clone());
                let written = rules[i].0.strip_prefix('~').unwrap_or_default().trim_start();
                if compile(written, true).is_some_and(|re| re.is_match(&host)) {
                    return Some(key.clone());
                }
            }
            None
        })
        .or_else(|| default.map(str::to_ascii_lowercase).filter(|d| keys.contains(d)));
    let Some(domain) = domain else { return Route::NotFound };

    enum Url<'a> {
        Exact(&'a str),
        Prefix(&'a str, bool),
        Regex(&'a str, bool),
    }
    let urls: Vec<(usize, Url<'_>)> = rules
        .iter()
        .enumerate()
        .filter(|(i, _)| keys[*i] == domain)
        .map(|(i, (_, url))| {
            let url = if let Some(rest) = url.strip_prefix("^~") {
                Url::Prefix(rest.trim_start(), true)
            } else if let Some(rest) = url.strip_prefix("~*") {
                Url::Regex(rest.trim_start(), true)
            } else if let Some(rest) = url.strip_prefix('~') {
                Url::Regex(rest.trim_start(), false)
            } else if let Some(rest) = url.strip_prefix('=') {
                Url::Exact(rest.trim_start())
            } else {
                Url::Prefix(url, false)
            };
            (i, url)
        })
        .collect();
    if let Some((i, _)) = urls.iter().find(|(_, u)| matches!(u, Url::Exact(p) if *p == path)) {
        return Route::Rule(*i);
    }
    let mut best: Option<(usize, bool, usize)> = None;
    for (i, url) in &urls {
        if let Url::Prefix(prefix, no_regex) = url {
            if prefix.len() == path.len() + 1 && prefix.ends_with('/') && prefix.starts_with(path) {
                return Route::Redirect(prefix.to_string());
            }
            if path.starts_with(prefix) && best.is_none_or(|(len, _, _)| prefix.len() > len) {
                best = Some((prefix.len(), *no_regex, *i));
            }
        }
    }
    if let Some((_, true, i)) = best {
        return Route::Rule(i);
    }
    for (i, url) in &urls {
        if let Url::Regex(pattern, caseless) = url
            && compile(pattern, *caseless).is_some_and(|re| re.is_match(path))
        {
            return Route::Rule(*i);
        }
    }
    best.map_or(Route::NotFound, |(_, _, i)| Route::Rule(i))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let (Some(host), Some(path), Some(default)) = (lines.next(), lines.next(), lines.next()) else { return };
    let rules: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once('\t')).collect();
    if rules.len() > 16 || text.split('\n').any(|l| l.len() > 80) {
        return;
    }
    let default = (!default.is_empty()).then_some(default);
    let router =
        Router::build(rules.iter().map(|(d, u)| RouteRule { domain: d.to_string(), url: u.to_string() }), default);
    let expected = reference(&rules, default, host, path);
    assert_eq!(router.route(host, path), expected, "host {host:?} path {path:?} rules {rules:?} default {default:?}");
});
