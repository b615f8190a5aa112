#![no_main]
//! Layer-7 custom configuration snippets (`snapshot::custom::Settings::parse`; docs/load-balancer.md): any text
//! parses or is refused with a message, without panicking. A snippet that parses: merging is what
//! docs/load-balancer.md says (over nothing or under nothing it is itself, over itself too); decorating an answer
//! of any status adds its headers and never panics; each `proxy_set_header` template rendered with valid header
//! values is a valid header value; the snippet with a comment line and blank space around its statements parses
//! the same.

use fnlb::snapshot::custom::{Settings, Var};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(settings) = Settings::parse(text) else { return };
    let none = Settings::default();
    assert_eq!(settings.merged(&none), settings);
    assert_eq!(none.merged(&settings), settings);
    assert_eq!(settings.merged(&settings), settings);
    for status in [100, 200, 204, 302, 404, 502, 599] {
        let mut answer = http::Response::new(());
        *answer.status_mut() = http::StatusCode::from_u16(status).expect("a status");
        fnlb::proxy::policy::decorate(&settings, &mut answer);
        assert!(answer.headers().contains_key(http::header::SERVER));
        for (name, value) in &settings.more_set_headers {
            assert_eq!(answer.headers().get_all(name).iter().collect::<Vec<_>>(), [value], "set once");
        }
        for added in settings.added(status) {
            assert!(added.always || status < 400);
        }
    }
    for (_, template) in &settings.proxy_set_headers {
        let rendered = template.render(|var| match var {
            Var::RemoteAddr => "192.0.2.1".into(),
            Var::RemotePort => "50123".into(),
            Var::Uri | Var::RequestUri => "/a b/%7e?x=1".into(),
            _ => "v".into(),
        });
        assert!(HeaderValue::from_str(&rendered).is_ok(), "{rendered:?}");
    }
    let spaced = format!("# a comment\n\n{text}\n\t");
    assert_eq!(Settings::parse(&spaced).ok(), Some(settings.clone()), "{spaced:?}");
});
