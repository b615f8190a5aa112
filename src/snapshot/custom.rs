//! Layer-7 custom configuration: CLB's nginx-like snippets (`client_max_body_size 10M;` …), parsed, checked
//! against Tencent's documented ranges, and merged from the instance down to the domain and the rule.
//!
//! A snippet is a list of `directive argument…;` statements. The directives that shape a self-hosted balancer's
//! behaviour take effect (`Settings`); the other documented ones are accepted and have no effect here (TLS
//! protocol and cipher tuning, buffer sizes), so that a snippet written for Tencent Cloud is taken unchanged.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// The largest snippet (64 KB, as on Tencent Cloud).
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;

/// What a snippet sets. `None` (or an empty list) leaves the value of the level above, or fnlb's default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    pub client_header_timeout: Option<Duration>,
    pub client_body_timeout: Option<Duration>,
    pub client_max_body_size: Option<u64>,
    pub keepalive_timeout: Option<Duration>,
    pub keepalive_requests: Option<u32>,
    pub proxy_connect_timeout: Option<Duration>,
    pub proxy_read_timeout: Option<Duration>,
    pub proxy_send_timeout: Option<Duration>,
    pub server_tokens: Option<bool>,
    /// Response headers added (nginx `add_header`): to 2xx and 3xx answers, or to all with `always`.
    pub add_headers: Vec<AddHeader>,
    /// Response headers set on every answer, replacing any (`more_set_headers "Name: value"`).
    pub more_set_headers: Vec<(HeaderName, HeaderValue)>,
    /// Request headers set for the backend or the function (`proxy_set_header`).
    pub proxy_set_headers: Vec<(HeaderName, Template)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AddHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
    pub always: bool,
}

/// A header value with variables (`$remote_port`), filled in per request.
#[derive(Clone, Debug, PartialEq)]
pub struct Template(Vec<Piece>);

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// The variables a `proxy_set_header` value may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// `$remote_addr`: the client's address.
    RemoteAddr,
    /// `$remote_port`: the client's source port.
    RemotePort,
    /// `$server_addr`: the load balancer's VIP.
    ServerAddr,
    /// `$server_port`, `$vport`: the listener's port.
    ServerPort,
    /// `$request_method`.
    Method,
    /// `$uri`: the request path.
    Uri,
    /// `$request_uri`: the path with the query.
    RequestUri,
    /// `$args`: the query string.
    Args,
    /// `$host`: the request's host.
    Host,
    /// `$scheme`: `http` or `https`.
    Scheme,
    /// `$lbid`: the load balancer's id.
    LbId,
    /// `$stgw_request_id`: the request's id.
    RequestId,
}

/// Why a snippet was refused; the message names the directive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn error(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// Directives Tencent documents that fnlb accepts and does not act on.
const ACCEPTED_WITHOUT_EFFECT: &[&str] = &[
    "ssl_protocols",
    "ssl_ciphers",
    "client_header_buffer_size",
    "proxy_buffer_size",
    "proxy_buffers",
    "proxy_request_buffering",
    "send_timeout",
    "ssl_verify_depth",
    "proxy_redirect",
    "ssl_early_data",
    "http2_max_field_size",
    "error_page",
    "proxy_ignore_client_abort",
];

// === impl Settings ===

impl Settings {
    /// Parses and checks a snippet.
    pub fn parse(content: &str) -> Result<Settings, ConfigError> {
        if content.len() > MAX_CONTENT_BYTES {
            return Err(error(format!("the configuration is longer than {MAX_CONTENT_BYTES} bytes")));
        }
        let mut settings = Settings::default();
        for statement in statements(content)? {
            settings.set(&statement)?;
        }
        Ok(settings)
    }

    fn set(&mut self, statement: &[String]) -> Result<(), ConfigError> {
        let (name, args) = statement.split_first().expect("statements are not empty");
        let one = || match args {
            [arg] => Ok(arg.as_str()),
            _ => Err(error(format!("`{name}` takes one value"))),
        };
        let seconds = |min: u64, max: u64| time(name, one()?, min, max);
        match name.as_str() {
            "client_header_timeout" => self.client_header_timeout = Some(seconds(30, 120)?),
            "client_body_timeout" => self.client_body_timeout = Some(seconds(30, 120)?),
            "keepalive_timeout" => match args {
                // A second value (the `Keep-Alive: timeout=` header nginx may send) is accepted and not sent.
                [idle] | [idle, _] => self.keepalive_timeout = Some(time(name, idle, 0, 900)?),
                _ => return Err(error("`keepalive_timeout` takes one or two values")),
            },
            "proxy_connect_timeout" => self.proxy_connect_timeout = Some(seconds(4, 120)?),
            "proxy_read_timeout" => self.proxy_read_timeout = Some(seconds(30, 3600)?),
            "proxy_send_timeout" => self.proxy_send_timeout = Some(seconds(30, 3600)?),
            "client_max_body_size" => self.client_max_body_size = Some(size(name, one()?)?),
            "keepalive_requests" => {
                let n = one()?.parse::<u32>().ok().filter(|n| (1..=10_000).contains(n));
                self.keepalive_requests = Some(n.ok_or_else(|| error("`keepalive_requests` is 1 to 10000"))?);
            }
            "server_tokens" => {
                self.server_tokens = Some(match one()? {
                    "on" => true,
                    "off" => false,
                    _ => return Err(error("`server_tokens` is on or off")),
                })
            }
            "add_header" => {
                let (header, value, always) = match args {
                    [h, v] => (h, v, false),
                    [h, v, a] if a == "always" => (h, v, true),
                    _ => return Err(error("`add_header` takes a name, a value and optionally `always`")),
                };
                let (name, value) = header_pair(header, value)?;
                self.add_headers.push(AddHeader { name, value, always });
            }
            "more_set_headers" => {
                for arg in args {
                    let (header, value) = arg
                        .split_once(':')
                        .ok_or_else(|| error("`more_set_headers` takes \"Name: value\" arguments"))?;
                    // Set twice, a header has its last value (as the general path's `insert` gives it), once.
                    let (name, value) = header_pair(header.trim(), value.trim())?;
                    self.more_set_headers.retain(|(set, _)| *set != name);
                    self.more_set_headers.push((name, value));
                }
                if args.is_empty() {
                    return Err(error("`more_set_headers` takes \"Name: value\" arguments"));
                }
            }
            "proxy_set_header" => {
                let [header, value] = args else {
                    return Err(error("`proxy_set_header` takes a name and a value"));
                };
                let name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| error(format!("`{header}` is not a header name")))?;
                let template = Template::parse(value)?;
                self.proxy_set_headers.push((name, template));
            }
            known if ACCEPTED_WITHOUT_EFFECT.contains(&known) => {
                if args.is_empty() {
                    return Err(error(format!("`{name}` needs a value")));
                }
            }
            _ => return Err(error(format!("`{name}` is not a supported directive"))),
        }
        Ok(())
    }

    /// These settings with `inner`'s on top: a value set in `inner` wins; a list set in `inner` replaces the
    /// outer one as a whole (nginx's inheritance of `add_header` and `proxy_set_header`).
    pub fn merged(&self, inner: &Settings) -> Settings {
        fn pick<T: Clone>(outer: &Option<T>, inner: &Option<T>) -> Option<T> {
            inner.clone().or_else(|| outer.clone())
        }
        fn list<T: Clone>(outer: &[T], inner: &[T]) -> Vec<T> {
            if inner.is_empty() { outer.to_vec() } else { inner.to_vec() }
        }
        Settings {
            client_header_timeout: pick(&self.client_header_timeout, &inner.client_header_timeout),
            client_body_timeout: pick(&self.client_body_timeout, &inner.client_body_timeout),
            client_max_body_size: pick(&self.client_max_body_size, &inner.client_max_body_size),
            keepalive_timeout: pick(&self.keepalive_timeout, &inner.keepalive_timeout),
            keepalive_requests: pick(&self.keepalive_requests, &inner.keepalive_requests),
            proxy_connect_timeout: pick(&self.proxy_connect_timeout, &inner.proxy_connect_timeout),
            proxy_read_timeout: pick(&self.proxy_read_timeout, &inner.proxy_read_timeout),
            proxy_send_timeout: pick(&self.proxy_send_timeout, &inner.proxy_send_timeout),
            server_tokens: pick(&self.server_tokens, &inner.server_tokens),
            add_headers: list(&self.add_headers, &inner.add_headers),
            more_set_headers: list(&self.more_set_headers, &inner.more_set_headers),
            proxy_set_headers: list(&self.proxy_set_headers, &inner.proxy_set_headers),
        }
    }
}

/// The `Server` header of fnlb's answers: the version only with `server_tokens on`.
const SERVER: &str = "fnlb";
const SERVER_WITH_VERSION: &str = concat!("fnlb/", env!("CARGO_PKG_VERSION"));

impl Settings {
    /// Whether `more_set_headers` sets the header `name` (replacing whatever the answer had).
    pub fn sets(&self, name: &str) -> bool {
        self.more_set_headers.iter().any(|(set, _)| name.eq_ignore_ascii_case(set.as_str()))
    }

    /// The `Server` header of answers that have none (`server_tokens`).
    pub fn server(&self) -> &'static str {
        if self.server_tokens == Some(true) { SERVER_WITH_VERSION } else { SERVER }
    }

    /// The `add_header` headers an answer with `status` gets: nginx adds them to these statuses unless `always`
    /// is given.
    pub fn added(&self, status: u16) -> impl Iterator<Item = &AddHeader> {
        let listed = matches!(status, 200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308);
        self.add_headers.iter().filter(move |h| h.always || listed)
    }
}

/// Splits a snippet into statements of words: `;` ends a statement, `#` starts a comment, quotes group words.
fn statements(content: &str) -> Result<Vec<Vec<String>>, ConfigError> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut chars = content.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            ';' => {
                if words.is_empty() {
                    return Err(error("an empty statement (`;` alone)"));
                }
                out.push(std::mem::take(&mut words));
            }
            '"' | '\'' => {
                let mut word = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') => word.extend(chars.next()),
                        Some(other) => word.push(other),
                        None => return Err(error("a quoted value is not closed")),
                    }
                }
                words.push(word);
            }
            '{' | '}' => return Err(error("blocks (`{ }`) are not allowed")),
            first => {
                let mut word = String::from(first);
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || matches!(next, ';' | '"' | '\'' | '{' | '}') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                words.push(word);
            }
        }
    }
    if let Some(first) = words.first() {
        return Err(error(format!("`{first}` is not ended by `;`")));
    }
    Ok(out)
}

/// An nginx time (`60`, `60s`, `2m`, `1h`) in whole seconds within `min..=max`.
fn time(name: &str, value: &str, min: u64, max: u64) -> Result<Duration, ConfigError> {
    let (digits, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len()));
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => 0,
    };
    let seconds = digits.parse::<u64>().ok().filter(|_| scale > 0).map(|n| n.saturating_mul(scale));
    match seconds {
        Some(s) if (min..=max).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(error(format!("`{name}` is a time from {min}s to {max}s"))),
    }
}

/// `client_max_body_size`: `k`, `m` or `g` units, 1M to 10240M.
fn size(name: &str, value: &str) -> Result<u64, ConfigError> {
    let lower = value.to_ascii_lowercase();
    let (digits, unit) = lower.split_at(lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len()));
    let scale: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => 0,
    };
    let bytes = digits.parse::<u64>().ok().filter(|_| scale > 0).map(|n| n.saturating_mul(scale));
    match bytes {
        Some(b) if ((1 << 20)..=(10_240 << 20)).contains(&b) => Ok(b),
        _ => Err(error(format!("`{name}` is a size from 1M to 10240M"))),
    }
}

fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let header =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| error(format!("`{name}` is not a header name")))?;
    let value = HeaderValue::from_str(value).map_err(|_| error(format!("the value of `{name}` is not valid")))?;
    Ok((header, value))
}

// === impl Template ===

impl Template {
    fn parse(value: &str) -> Result<Template, ConfigError> {
        let mut pieces = Vec::new();
        let mut rest = value;
        while let Some(at) = rest.find('$') {
            if at > 0 {
                pieces.push(Piece::Text(rest[..at].to_string()));
            }
            let after = &rest[at + 1..];
            let (braced, after) = match after.strip_prefix('{') {
                Some(inner) => (true, inner),
                None => (false, after),
            };
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            let name = &after[..end];
            let var = Var::parse(name).ok_or_else(|| error(format!("`${name}` is not a supported variable")))?;
            pieces.push(Piece::Var(var));
            rest = &after[end..];
            if braced {
                rest = rest.strip_prefix('}').ok_or_else(|| error(format!("`${{{name}` is not closed")))?;
            }
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        if HeaderValue::from_str(&value.replace('$', "")).is_err() {
            return Err(error("a `proxy_set_header` value is not a valid header value"));
        }
        Ok(Template(pieces))
    }

    /// The value for one request.
    pub fn render(&self, lookup: impl Fn(Var) -> String) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var(var) => out.push_str(&lookup(*var)),
            }
        }
        out
    }
}

impl Var {
    fn parse(name: &str) -> Option<Var> {
        Some(match name {
            "remote_addr" => Var::RemoteAddr,
            "remote_port" => Var::RemotePort,
            "server_addr" => Var::ServerAddr,
            "server_port" | "vport" => Var::ServerPort,
            "request_method" => Var::Method,
            "uri" => Var::Uri,
            "request_uri" => Var::RequestUri,
            "args" | "query_string" => Var::Args,
            "host" => Var::Host,
            "scheme" => Var::Scheme,
            "lbid" => Var::LbId,
            "stgw_request_id" => Var::RequestId,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_set_twice_by_more_set_headers_has_its_last_value_once() {
        let s = Settings::parse("more_set_headers 'X-A: 0 b' 'Server: edge';\nmore_set_headers 'x-a: b';").unwrap();
        let set: Vec<_> = s.more_set_headers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(set, [("server", "edge"), ("x-a", "b")]);
    }

    #[test]
    fn parses_the_documented_directives() {
        let s = Settings::parse(
            "client_max_body_size 224M;\r\nclient_body_timeout 60s;\nkeepalive_timeout 0; keepalive_requests 2;\n\
             proxy_read_timeout 2m; server_tokens off; add_header X-A 'one two' always; add_header X-B b;\n\
             more_set_headers \"Server: edge\"; proxy_set_header X-Real-Port $remote_port;\n\
             proxy_set_header X-Where \"${server_addr}:$vport\"; ssl_protocols TLSv1.2 TLSv1.3; # a comment\n",
        )
        .unwrap();
        assert_eq!(s.client_max_body_size, Some(224 << 20));
        assert_eq!(s.client_body_timeout, Some(Duration::from_secs(60)));
        assert_eq!(s.keepalive_timeout, Some(Duration::ZERO));
        assert_eq!(s.keepalive_requests, Some(2));
        assert_eq!(s.proxy_read_timeout, Some(Duration::from_secs(120)));
        assert_eq!(s.server_tokens, Some(false));
        assert_eq!(s.add_headers.len(), 2);
        assert!(s.add_headers[0].always && s.add_headers[0].value == "one two");
        assert_eq!(s.more_set_headers[0].0, "server");
        let lookup = |v: Var| match v {
            Var::RemotePort => "5000".to_string(),
            Var::ServerAddr => "10.0.0.1".to_string(),
            Var::ServerPort => "80".to_string(),
            _ => String::new(),
        };
        assert_eq!(s.proxy_set_headers[0].1.render(lookup), "5000");
        assert_eq!(s.proxy_set_headers[1].1.render(lookup), "10.0.0.1:80");
    }

    #[test]
    fn refuses_what_tencent_refuses() {
        for bad in [
            "client_header_timeout 10s;",
            "client_header_timeout 121;",
            "client_max_body_size 10241M;",
            "client_max_body_size 512k;",
            "keepalive_timeout 901;",
            "keepalive_requests 0;",
            "proxy_connect_timeout 3;",
            "proxy_read_timeout 4000;",
            "server_tokens maybe;",
            "gzip on;",
            "proxy_set_header X-Secret $secret;",
            "add_header X-A;",
            "client_max_body_size 1M",
            "location / { }",
            "proxy_set_header X-A \"open;",
            ";",
        ] {
            assert!(Settings::parse(bad).is_err(), "{bad} was accepted");
        }
        assert!(Settings::parse(&"#".repeat(MAX_CONTENT_BYTES + 1)).is_err());
        assert_eq!(Settings::parse("").unwrap(), Settings::default());
    }

    #[test]
    fn inner_levels_win_and_lists_replace_as_a_whole() {
        let instance =
            Settings::parse("keepalive_timeout 10; add_header X-A a; add_header X-B b; server_tokens on;").unwrap();
        let rule = Settings::parse("keepalive_timeout 20; add_header X-C c;").unwrap();
        let merged = instance.merged(&Settings::default()).merged(&rule);
        assert_eq!(merged.keepalive_timeout, Some(Duration::from_secs(20)));
        assert_eq!(merged.server_tokens, Some(true));
        assert_eq!(merged.add_headers.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["x-c"]);
        assert_eq!(instance.merged(&Settings::default()), instance);
    }
}
