//! A TencentCloud API 3.0 client for fnlb's own endpoint: the CLI and the embedded example use it, so they go
//! through exactly what tccli and the SDKs go through.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::api::Service;
use crate::api::tc3;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{code}: {message} (RequestId {request_id})")]
    Api { code: String, message: String, request_id: String },
    #[error("cannot reach the API at {endpoint}: {reason}")]
    Transport { endpoint: String, reason: String },
    #[error("the API answered something that is not an API response: {0}")]
    BadResponse(String),
    #[error("the API did not answer within {0:?}")]
    TimedOut(Duration),
}

#[derive(Clone, Debug)]
pub struct Credentials {
    pub secret_id: String,
    pub secret_key: String,
}

pub struct Client {
    endpoint: http::Uri,
    credentials: Credentials,
    region: String,
    timeout: Duration,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

/// How long one API call may take by default (a synchronous `Invoke` may run 300 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(320);

/// A header of fnlb's client that makes each signed request unique.
const NONCE_HEADER: &str = "x-fnlb-nonce";

// === impl Client ===

impl Client {
    /// `endpoint` is `http://host:port`.
    pub fn new(endpoint: &str, credentials: Credentials, region: &str) -> Result<Client, ClientError> {
        let bad = |reason: &str| ClientError::Transport { endpoint: endpoint.to_string(), reason: reason.to_string() };
        let uri: http::Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(bad("the endpoint must be http://host:port"));
        }
        let http = HttpClient::builder(TokioExecutor::new()).build_http();
        Ok(Client { endpoint: uri, credentials, region: region.to_string(), timeout: DEFAULT_TIMEOUT, http })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Calls an action; returns the `Response` object (without `RequestId` removed) or the API's error.
    pub async fn call(&self, service: Service, action: &str, params: Value) -> Result<Value, ClientError> {
        let body = serde_json::to_vec(&params).expect("JSON values serialise");
        let host = self.endpoint.authority().expect("checked in new").to_string();
        let timestamp = crate::clock::now_ms() / 1000;
        let content_type = "application/json";
        // The action is signed (so that the request cannot be sent as another), and so is a nonce: a signature is
        // good for one request, and two identical calls within a second are two requests.
        let nonce = crate::ids::request_id();
        let signed = tc3::Signed {
            method: "POST",
            query: "",
            headers: vec![
                ("content-type".to_string(), content_type),
                ("host".to_string(), host.as_str()),
                (NONCE_HEADER.to_string(), nonce.as_str()),
                ("x-tc-action".to_string(), action),
            ],
            payload_hash: tc3::sha256_hex(&body),
            timestamp,
            service: service.name(),
        };
        let authorization = tc3::authorization(&self.credentials.secret_id, &self.credentials.secret_key, &signed);
        let request = Request::post(self.endpoint.clone())
            .header(header::HOST, &host)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::AUTHORIZATION, authorization)
            .header("X-TC-Action", action)
            .header(NONCE_HEADER, &nonce)
            .header("X-TC-Version", service.version())
            .header("X-TC-Region", &self.region)
            .header("X-TC-Timestamp", timestamp.to_string())
            .body(Full::new(Bytes::from(body)))
            .expect("the request is well formed");
        let transport = |e: &dyn std::fmt::Display| ClientError::Transport {
            endpoint: self.endpoint.to_string(),
            reason: e.to_string(),
        };
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| transport(&e))?;
            let bytes = response.into_body().collect().await.map_err(|e| transport(&e))?.to_bytes();
            Ok::<_, ClientError>(bytes)
        };
        let bytes =
            tokio::time::timeout(self.timeout, exchange).await.map_err(|_| ClientError::TimedOut(self.timeout))??;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| ClientError::BadResponse(String::from_utf8_lossy(&bytes).into_owned()))?;
        let response = value.get("Response").cloned().ok_or_else(|| ClientError::BadResponse(value.to_string()))?;
        if let Some(error) = response.get("Error") {
            let text = |k: &str| error.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            return Err(ClientError::Api {
                code: text("Code"),
                message: text("Message"),
                request_id: response.get("RequestId").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
            });
        }
        Ok(response)
    }
}
