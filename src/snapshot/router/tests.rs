use super::*;

fn router(rules: &[(&str, &str)], default: Option<&str>) -> Router {
    Router::build(rules.iter().map(|(d, u)| RouteRule { domain: d.to_string(), url: u.to_string() }), default)
}

#[test]
fn exact_domain_then_default() {
    let r = router(&[("a.com", "/"), ("b.com", "/")], Some("a.com"));
    assert_eq!(r.route("b.com", "/x"), Route::Rule(1));
    assert_eq!(r.route("B.COM:8080", "/x"), Route::Rule(1));
    assert_eq!(r.route("unknown.com", "/x"), Route::Rule(0));
    assert_eq!(r.route("127.0.0.1:80", "/"), Route::Rule(0));
}

#[test]
fn no_default_and_no_match_is_not_found() {
    let r = router(&[("a.com", "/")], None);
    assert_eq!(r.route("b.com", "/"), Route::NotFound);
}

#[test]
fn domain_priority_exact_leading_trailing_regex() {
    let r = router(
        &[("~^www\\d+\\.x\\.com$", "/"), ("www.x.*", "/"), ("*.x.com", "/"), ("www1.x.com", "/"), ("*.a.x.com", "/")],
        None,
    );
    assert_eq!(r.route("www1.x.com", "/"), Route::Rule(3));
    assert_eq!(r.route("www2.x.com", "/"), Route::Rule(2));
    assert_eq!(r.route("q.a.x.com", "/"), Route::Rule(4), "the longest leading wildcard wins");
    assert_eq!(r.route("www.x.org", "/"), Route::Rule(1));
    assert_eq!(r.route("x.com", "/"), Route::NotFound, "*.x.com needs a label before .x.com");
}

#[test]
fn regex_domain() {
    let r = router(&[("~^www\\d+\\.example\\.com$", "/")], None);
    assert_eq!(r.route("www42.example.com", "/"), Route::Rule(0));
    assert_eq!(r.route("www.example.com", "/"), Route::NotFound);
}

#[test]
fn url_exact_beats_prefix() {
    let r = router(&[("a", "/"), ("a", "=/api"), ("a", "/api")], None);
    assert_eq!(r.route("a", "/api"), Route::Rule(1));
    assert_eq!(r.route("a", "/api/x"), Route::Rule(2));
    assert_eq!(r.route("a", "/other"), Route::Rule(0));
}

#[test]
fn longest_prefix_wins() {
    let r = router(&[("a", "/a"), ("a", "/a/b"), ("a", "/a/b/c")], None);
    assert_eq!(r.route("a", "/a/b/cd"), Route::Rule(2));
    assert_eq!(r.route("a", "/a/bx"), Route::Rule(1));
    assert_eq!(r.route("a", "/ab"), Route::Rule(0));
    assert_eq!(r.route("a", "/b"), Route::NotFound);
}

#[test]
fn trailing_slash_redirects() {
    let r = router(&[("a", "/abc/"), ("a", "/x")], None);
    assert_eq!(r.route("a", "/abc"), Route::Redirect("/abc/".to_string()));
    assert_eq!(r.route("a", "/abc/"), Route::Rule(0));
    assert_eq!(r.route("a", "/x/"), Route::Rule(1), "a rule without the slash matches both forms");
    assert_eq!(r.route("a", "/x"), Route::Rule(1));
}

#[test]
fn regex_urls_beat_plain_prefix_but_not_caret_tilde() {
    let r = router(&[("a", "/img/"), ("a", "~*\\.(gif|jpg)$"), ("a", "^~/static/")], None);
    assert_eq!(r.route("a", "/img/x.JPG"), Route::Rule(1));
    assert_eq!(r.route("a", "/img/x.png"), Route::Rule(0));
    assert_eq!(r.route("a", "/static/x.gif"), Route::Rule(2));
}

#[test]
fn case_sensitive_regex_url() {
    let r = router(&[("a", "~\\.PNG$")], None);
    assert_eq!(r.route("a", "/x.PNG"), Route::Rule(0));
    assert_eq!(r.route("a", "/x.png"), Route::NotFound);
}

#[test]
fn strip_port_forms() {
    assert_eq!(strip_port("a.com:80"), "a.com");
    assert_eq!(strip_port("a.com"), "a.com");
    assert_eq!(strip_port("[::1]:80"), "[::1]");
}
