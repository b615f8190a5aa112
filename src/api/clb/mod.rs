//! CLB (`2018-03-17`) actions.

pub mod certificates;
pub mod configs;
pub mod fallback;
pub mod listeners;
pub mod load_balancers;
pub mod rewrites;
pub mod rules;
pub mod targets;
pub mod tasks;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::ApiError;
use crate::state::HealthCheck;

/// Refuses a Modify action that names a parameter this server does not change (rather than ignoring it).
pub fn refuse_unchangeable(params: &serde_json::Map<String, Value>, names: &[&str]) -> Result<(), ApiError> {
    match names.iter().find(|name| params.contains_key(**name)) {
        Some(name) => {
            Err(ApiError::new("UnsupportedOperation", format!("Changing `{name}` is not supported by this server.")))
        }
        None => Ok(()),
    }
}

/// The `HealthCheck` object of a rule (HTTP checks) or of a layer-4 listener (`layer4`: TCP checks).
pub fn health_check_output(check: &HealthCheck, layer4: bool) -> Value {
    json!({
        "HealthSwitch": i64::from(check.enabled),
        "TimeOut": check.timeout_s,
        "IntervalTime": check.interval_s,
        "HealthNum": check.healthy_threshold,
        "UnHealthNum": check.unhealthy_threshold,
        "HttpCode": check.http_codes,
        "HttpCheckPath": check.path,
        "HttpCheckDomain": check.domain,
        "HttpCheckMethod": check.method,
        "CheckPort": null,
        "ContextType": null,
        "SendContext": null,
        "RecvContext": null,
        "CheckType": if layer4 { "TCP" } else { "HTTP" },
        "HttpVersion": "HTTP/1.1",
        "SourceIpType": 0,
        "ExtendedCode": null,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthCheckInput {
    health_switch: Option<i64>,
    time_out: Option<i64>,
    interval_time: Option<i64>,
    health_num: Option<i64>,
    un_health_num: Option<i64>,
    http_code: Option<i64>,
    http_check_path: Option<String>,
    http_check_domain: Option<String>,
    http_check_method: Option<String>,
    check_type: Option<String>,
    source_ip_type: Option<i64>,
}

/// A `HealthCheck` input applied over `base` (contract 5.3 ranges): fields left out keep their value. Rules
/// check over HTTP; layer-4 listeners (`layer4`) with a TCP connect.
pub fn health_check_input(value: Value, base: &HealthCheck, layer4: bool) -> Result<HealthCheck, ApiError> {
    let Value::Object(map) = value else {
        return Err(ApiError::new("InvalidParameter", "The parameter `HealthCheck` must be an object."));
    };
    let input: HealthCheckInput = crate::api::params::parse(map)?;
    let range = |name: &str, value: Option<i64>, low: i64, high: i64, current: u32| -> Result<u32, ApiError> {
        match value {
            None => Ok(current),
            Some(v) if (low..=high).contains(&v) => Ok(v as u32),
            Some(v) => Err(ApiError::new(
                "InvalidParameterValue.Range",
                format!("HealthCheck.{name} {v} is not valid: it is {low} to {high}."),
            )),
        }
    };
    let mut check = base.clone();
    check.enabled = match input.health_switch {
        None => check.enabled,
        Some(0) => false,
        Some(1) => true,
        Some(v) => {
            return Err(ApiError::new("InvalidParameterValue", format!("HealthCheck.HealthSwitch {v} is not 0 or 1.")));
        }
    };
    check.timeout_s = range("TimeOut", input.time_out, 2, 60, check.timeout_s)?;
    check.interval_s = range("IntervalTime", input.interval_time, 2, 300, check.interval_s)?;
    check.healthy_threshold = range("HealthNum", input.health_num, 2, 10, check.healthy_threshold)?;
    check.unhealthy_threshold = range("UnHealthNum", input.un_health_num, 2, 10, check.unhealthy_threshold)?;
    check.http_codes = range("HttpCode", input.http_code, 1, 31, check.http_codes)?;
    if check.timeout_s >= check.interval_s {
        return Err(ApiError::new(
            "InvalidParameterValue",
            "HealthCheck.TimeOut must be shorter than HealthCheck.IntervalTime.",
        ));
    }
    if let Some(path) = input.http_check_path {
        if !path.starts_with('/') || path.len() > 200 || path.contains(char::is_whitespace) {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("HealthCheck.HttpCheckPath `{path}` is not valid: 1 to 200 characters starting with `/`."),
            ));
        }
        check.path = path;
    }
    if let Some(domain) = input.http_check_domain {
        if domain.starts_with('~') || domain.contains('*') || domain.len() > 80 {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("HealthCheck.HttpCheckDomain `{domain}` is not valid: a plain host name."),
            ));
        }
        check.domain = domain.to_ascii_lowercase();
    }
    if let Some(method) = input.http_check_method {
        let method = method.to_ascii_uppercase();
        if method != "HEAD" && method != "GET" {
            return Err(ApiError::new("InvalidParameterValue", "HealthCheck.HttpCheckMethod is HEAD or GET."));
        }
        check.method = method;
    }
    let wanted = if layer4 { "TCP" } else { "HTTP" };
    if input.check_type.as_deref().is_some_and(|t| t != wanted) {
        return Err(ApiError::new(
            "UnsupportedOperation",
            format!("Health checks here are CheckType {wanted} (HTTP for rules, TCP for layer-4 listeners)."),
        ));
    }
    if input.source_ip_type.is_some_and(|t| t != 0) {
        return Err(ApiError::new("UnsupportedOperation", "Health checks come from the VIP (SourceIpType 0)."));
    }
    Ok(check)
}
