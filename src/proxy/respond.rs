//! Every answer the load balancer makes itself, decided in one place (contract 0.2).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

use super::upload::BodyFailure;
use crate::functions::{FunctionError, status};

/// A response body: one the balancer made, a function's, or a server's streamed through.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A body held in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// The HTTP status a function failure is answered with.
pub fn function_status(code: u16) -> StatusCode {
    match code {
        status::REQUEST_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        status::CONCURRENCY => StatusCode::SERVICE_UNAVAILABLE,
        status::TIMEOUT => StatusCode::GATEWAY_TIMEOUT,
        status::INTERNAL => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// `{"errno": …, "error": …, "requestId": …}` with the status that goes with the errno.
pub fn function_error(error: &FunctionError, request_id: &str) -> Response<Body> {
    errno(function_status(error.status), error.status, &error.message, request_id)
}

/// The return value was not an integration response (the documented text, kept exactly).
pub fn bad_integration(request_id: &str) -> Response<Body> {
    errno(StatusCode::BAD_GATEWAY, 403, "Analyse scf response failed.", request_id)
}

pub fn errno(http: StatusCode, errno: u16, message: &str, request_id: &str) -> Response<Body> {
    let body = serde_json::json!({"errno": errno, "error": message, "requestId": request_id}).to_string();
    with_type(http, "application/json", body)
}

pub fn not_found() -> Response<Body> {
    page(StatusCode::NOT_FOUND, "404 Not Found")
}

/// The matched rule has no target (or none that can take the request).
pub fn no_target() -> Response<Body> {
    page(StatusCode::SERVICE_UNAVAILABLE, "503 Service Temporarily Unavailable")
}

/// The client did not send its request body in time.
pub fn request_timeout() -> Response<Body> {
    page(StatusCode::REQUEST_TIMEOUT, "408 Request Time-out")
}

/// No server target could be reached, or it broke the exchange.
pub fn bad_gateway() -> Response<Body> {
    page(StatusCode::BAD_GATEWAY, "502 Bad Gateway")
}

/// The server target did not answer within the read timeout.
pub fn gateway_timeout() -> Response<Body> {
    page(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out")
}

/// A request body over the listener's limit (to server targets; functions answer errno 406).
pub fn too_large() -> Response<Body> {
    page(StatusCode::PAYLOAD_TOO_LARGE, "413 Request Entity Too Large")
}

pub fn bad_request() -> Response<Body> {
    page(StatusCode::BAD_REQUEST, "400 Bad Request")
}

/// A request body that failed by the client's fault (RFC 9110 section 15.5): past its limit 413, a pause past the
/// body timeout 408, unreadable 400 (RFC 9112 section 7.1: a malformed chunked coding, or a body cut short).
pub fn body_failure(failure: BodyFailure) -> Response<Body> {
    match failure {
        BodyFailure::TooLarge => too_large(),
        BodyFailure::TimedOut => request_timeout(),
        BodyFailure::Broken => bad_request(),
    }
}

/// 301 to `location` (the trailing-slash rule of contract 5.3).
pub fn moved(location: &str) -> Response<Body> {
    redirect(StatusCode::MOVED_PERMANENTLY, location)
}

/// A redirect (301, 302 or 307) to `location`.
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let title = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("Redirect"));
    let mut response = page(status, &title);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn page(status: StatusCode, title: &str) -> Response<Body> {
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>fnlb</center>\r\n</body>\r\n</html>\r\n"
    );
    with_type(status, "text/html", body)
}

fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
