//! CLB's layer-7 forwarding rules as a pure function: (host, path) → rule.
//!
//! Domains (contract 5.3): exact names first, then leading wildcards (`*.example.com`, the longest wins), then
//! trailing wildcards (`www.example.*`, the longest wins), then regular expressions (`~…`, in creation order);
//! a host that matches none uses the listener's default domain.
//!
//! URLs, within the matched domain, as nginx locations: `= /x` exact; a prefix rule whose URL is the path plus
//! `/` answers 301 to that URL; otherwise the longest plain prefix (`/x`, or `^~ /x`, which also skips
//! regular expressions); then `~` and `~*` regular expressions in creation order; then the longest prefix;
//! nothing → 404.

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};

use super::FastMap;

/// A rule as the router sees it: its domain and URL as configured.
#[derive(Clone, Debug)]
pub struct RouteRule {
    pub domain: String,
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The index of the matched rule, in the order the rules were given.
    Rule(usize),
    /// 301 to this path (the rule's URL ends in `/` and the request lacks it).
    Redirect(String),
    NotFound,
}

#[derive(Debug, Default)]
pub struct Router {
    exact: FastMap<String, usize>,
    /// `*.example.com` stored as `.example.com`, longest first.
    leading: Vec<(String, usize)>,
    /// `www.example.*` stored as `www.example.`, longest first.
    trailing: Vec<(String, usize)>,
    regex: Vec<(Regex, usize)>,
    default: Option<usize>,
    /// One URL table per distinct domain.
    domains: Vec<UrlTable>,
    /// The distinct domains as configured (lower-case unless a regular expression), by index.
    names: Vec<String>,
}

#[derive(Debug, Default)]
struct UrlTable {
    exact: FastMap<String, usize>,
    /// (prefix, no-regex flag, rule), longest prefix first.
    prefixes: Vec<(String, bool, usize)>,
    regex: Vec<(Regex, usize)>,
}

/// A domain pattern, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum DomainPattern<'a> {
    Exact(&'a str),
    Leading(&'a str),
    Trailing(&'a str),
    Regex(&'a str),
}

/// A URL pattern, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum UrlPattern<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    PrefixNoRegex(&'a str),
    Regex(&'a str),
    RegexCaseless(&'a str),
}

pub fn parse_domain(domain: &str) -> DomainPattern<'_> {
    if let Some(re) = domain.strip_prefix('~') {
        DomainPattern::Regex(re.trim_start())
    } else if let Some(rest) = domain.strip_prefix('*') {
        DomainPattern::Leading(rest)
    } else if let Some(rest) = domain.strip_suffix('*') {
        DomainPattern::Trailing(rest)
    } else {
        DomainPattern::Exact(domain)
    }
}

/// A rule domain usable as a host name (an exact one), or `None` for wildcards and regular expressions.
pub fn plain_domain(domain: &str) -> Option<&str> {
    match parse_domain(domain) {
        DomainPattern::Exact(name) => Some(name),
        _ => None,
    }
}

pub fn parse_url(url: &str) -> UrlPattern<'_> {
    if let Some(rest) = url.strip_prefix("^~") {
        UrlPattern::PrefixNoRegex(rest.trim_start())
    } else if let Some(rest) = url.strip_prefix("~*") {
        UrlPattern::RegexCaseless(rest.trim_start())
    } else if let Some(rest) = url.strip_prefix('~') {
        UrlPattern::Regex(rest.trim_start())
    } else if let Some(rest) = url.strip_prefix('=') {
        UrlPattern::Exact(rest.trim_start())
    } else {
        UrlPattern::Prefix(url)
    }
}

/// Compiles a rule's regular expression (domain or URL); `None` explains why it is not valid.
pub fn compile_regex(pattern: &str, caseless: bool) -> Result<Regex, String> {
    RegexBuilder::new(pattern).case_insensitive(caseless).size_limit(1 << 20).build().map_err(|e| e.to_string())
}

// === impl Router ===

impl Router {
    /// Builds the router. Rules whose regular expression does not compile are left out (the API refuses them
    /// before they are stored, so this only guards against a store written by another version).
    pub fn build(rules: impl IntoIterator<Item = RouteRule>, default_domain: Option<&str>) -> Router {
        let mut router = Router::default();
        let mut domain_index: HashMap<String, usize> = HashMap::new();
        for (i, rule) in rules.into_iter().enumerate() {
            let domain_key = rule.domain.to_ascii_lowercase();
            let d = match domain_index.get(&domain_key) {
                Some(&d) => d,
                None => {
                    let d = router.domains.len();
                    router.domains.push(UrlTable::default());
                    router.names.push(domain_key.clone());
                    domain_index.insert(domain_key.clone(), d);
                    match parse_domain(&domain_key) {
                        DomainPattern::Exact(name) => {
                            router.exact.insert(name.to_string(), d);
                        }
                        DomainPattern::Leading(suffix) => router.leading.push((suffix.to_string(), d)),
                        DomainPattern::Trailing(prefix) => router.trailing.push((prefix.to_string(), d)),
                        DomainPattern::Regex(_) => {
                            // Compile from the rule as written: a regex's case matters to its author.
                            let DomainPattern::Regex(re) = parse_domain(&rule.domain) else { unreachable!() };
                            if let Ok(re) = compile_regex(re, true) {
                                router.regex.push((re, d));
                            }
                        }
                    }
                    d
                }
            };
            let table = &mut router.domains[d];
            match parse_url(&rule.url) {
                UrlPattern::Exact(path) => {
                    table.exact.entry(path.to_string()).or_insert(i);
                }
                UrlPattern::Prefix(prefix) => table.prefixes.push((prefix.to_string(), false, i)),
                UrlPattern::PrefixNoRegex(prefix) => table.prefixes.push((prefix.to_string(), true, i)),
                UrlPattern::Regex(re) => {
                    if let Ok(re) = compile_regex(re, false) {
                        table.regex.push((re, i));
                    }
                }
                UrlPattern::RegexCaseless(re) => {
                    if let Ok(re) = compile_regex(re, true) {
                        table.regex.push((re, i));
                    }
                }
            }
        }
        router.leading.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        router.trailing.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        for table in &mut router.domains {
            table.prefixes.sort_by_key(|(s, _, _)| std::cmp::Reverse(s.len()));
        }
        router.default = default_domain.and_then(|d| domain_index.get(&d.to_ascii_lowercase()).copied());
        router
    }

    /// Routes a request by its `Host` (port and case ignored) and its path (no query string).
    pub fn route(&self, host: &str, path: &str) -> Route {
        let Some(table) = self.domain_of(host).map(|d| &self.domains[d]) else {
            return Route::NotFound;
        };
        table.route(path)
    }

    /// The distinct domains, in the order of their index.
    pub fn domain_names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// The index of the listener's default domain.
    pub fn default_domain(&self) -> Option<usize> {
        self.default
    }

    /// The index of the domain a host (or a TLS server name) falls under: its own, or the default domain.
    pub fn domain_of(&self, host: &str) -> Option<usize> {
        let host = strip_port(host);
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        if let Some(&d) = self.exact.get(host) {
            return Some(d);
        }
        if let Some((_, d)) =
            self.leading.iter().find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
        {
            return Some(*d);
        }
        if let Some((_, d)) =
            self.trailing.iter().find(|(prefix, _)| host.len() > prefix.len() && host.starts_with(prefix.as_str()))
        {
            return Some(*d);
        }
        if let Some((_, d)) = self.regex.iter().find(|(re, _)| re.is_match(host)) {
            return Some(*d);
        }
        self.default
    }
}

impl UrlTable {
    fn route(&self, path: &str) -> Route {
        if let Some(&i) = self.exact.get(path) {
            return Route::Rule(i);
        }
        let longest = self.prefixes.iter().find(|(prefix, _, _)| path.starts_with(prefix.as_str()));
        // `/abc/` is the rule and `/abc` the request: send the client to the rule's form, unless a longer
        // rule already takes the path as it is.
        let redirect = self
            .prefixes
            .iter()
            .find(|(prefix, _, _)| prefix.len() == path.len() + 1 && prefix.ends_with('/') && prefix.starts_with(path));
        if let Some((prefix, _, _)) = redirect
            && longest.is_none_or(|(p, _, _)| p.len() < prefix.len())
        {
            return Route::Redirect(prefix.clone());
        }
        if let Some((_, true, i)) = longest {
            return Route::Rule(*i);
        }
        if let Some((_, i)) = self.regex.iter().find(|(re, _)| re.is_match(path)) {
            return Route::Rule(*i);
        }
        match longest {
            Some((_, _, i)) => Route::Rule(*i),
            None => Route::NotFound,
        }
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests;
