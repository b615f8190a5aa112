//! CLB (`2018-03-17`) actions.

pub mod certificates;
pub mod listeners;
pub mod load_balancers;
pub mod rules;
pub mod targets;
pub mod tasks;

use serde_json::{Value, json};

/// The `HealthCheck` object of a rule or listener (contract 5.3 defaults; active checks arrive with server targets).
pub fn health_check_output() -> Value {
    json!({
        "HealthSwitch": 1,
        "TimeOut": 2,
        "IntervalTime": 5,
        "HealthNum": 3,
        "UnHealthNum": 3,
        "HttpCode": 31,
        "HttpCheckPath": "/",
        "HttpCheckDomain": "",
        "HttpCheckMethod": "HEAD",
        "CheckPort": null,
        "ContextType": null,
        "SendContext": null,
        "RecvContext": null,
        "CheckType": "HTTP",
        "HttpVersion": "HTTP/1.1",
        "SourceIpType": 0,
        "ExtendedCode": null,
    })
}
