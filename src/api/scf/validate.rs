//! SCF parameter formats and ranges (contract 2.4, 2.9), checked before a command is built.

use std::ops::RangeInclusive;
use std::sync::LazyLock;

use regex::Regex;

use super::Environment;
use crate::api::ApiError;

static FUNCTION_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_-]{0,58}[A-Za-z0-9]$").expect("valid pattern"));
static HANDLER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z][A-Za-z0-9_/-]{0,58}[A-Za-z0-9]\.[A-Za-z_][A-Za-z0-9_-]{0,58}[A-Za-z0-9_]$")
        .expect("valid pattern")
});
static NAMESPACE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_-]{1,30}$").expect("valid pattern"));
static ENV_KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_]*$").expect("valid pattern"));

/// Variable names users may not set (contract 2.4).
pub const RESERVED_ENV_PREFIXES: &[&str] = &["SCF_", "QCLOUD_", "TENCENTCLOUD_"];
/// The most environment variables may add up to, keys and values together.
pub const MAX_ENVIRONMENT_BYTES: usize = 4 * 1024;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;

pub fn function_name(name: &str) -> Result<(), ApiError> {
    if FUNCTION_NAME.is_match(name) {
        return Ok(());
    }
    Err(ApiError::new(
        "InvalidParameterValue.FunctionName",
        format!(
            "FunctionName `{name}` is not valid: it must be 2 to 60 letters, digits, `-` or `_`, start with a letter and not end with `-` or `_`."
        ),
    ))
}

/// `file.function` for the interpreted runtimes; free form (printable, 1–128 characters) for custom runtimes,
/// which read it from `_HANDLER` themselves (contract 2.1).
pub fn handler(handler: &str, runtime: &str) -> Result<(), ApiError> {
    let free_form = runtime == "CustomRuntime" || runtime == "Go1";
    let printable = !handler.is_empty() && handler.chars().count() <= 128 && !handler.chars().any(char::is_control);
    if (free_form && printable) || HANDLER.is_match(handler) {
        return Ok(());
    }
    Err(ApiError::new(
        "InvalidParameterValue.Handler",
        format!("Handler `{handler}` is not valid: it must be `file.function`, such as `index.main_handler`."),
    ))
}

/// A namespace being created, changed or deleted (`InvalidParameterValue.NamespaceInvalid`).
pub fn namespace_name(name: &str) -> Result<(), ApiError> {
    namespace(name).map_err(|e| ApiError::new("InvalidParameterValue.NamespaceInvalid", e.message))
}

pub fn namespace(namespace: &str) -> Result<(), ApiError> {
    if NAMESPACE.is_match(namespace) {
        return Ok(());
    }
    Err(ApiError::new(
        "InvalidParameterValue.Namespace",
        format!("Namespace `{namespace}` is not valid: it must be 1 to 30 letters, digits, `-` or `_`."),
    ))
}

/// The memory sizes a function may have, as people read them (what `memory_allowed` takes).
pub const MEMORY_SIZES: &str = "64, or 128 to 3072 in steps of 128 (MB)";
/// The timeouts a function may have, in seconds.
pub const TIMEOUT_SECONDS: RangeInclusive<i64> = 1..=900;

/// Whether a function may have `mb` MB of memory (`MEMORY_SIZES`).
pub fn memory_allowed(mb: i64) -> bool {
    mb == 64 || ((128..=3072).contains(&mb) && mb % 128 == 0)
}

pub fn memory(mb: i64) -> Result<u32, ApiError> {
    if memory_allowed(mb) {
        return Ok(mb as u32);
    }
    Err(ApiError::new(
        "InvalidParameterValue.MemorySize",
        format!("MemorySize {mb} is not valid: it must be {MEMORY_SIZES}."),
    ))
}

pub fn timeout(seconds: i64) -> Result<u32, ApiError> {
    if TIMEOUT_SECONDS.contains(&seconds) {
        return Ok(seconds as u32);
    }
    Err(ApiError::new(
        "LimitExceeded.Timeout",
        format!(
            "Timeout {seconds} is not valid: it must be {} to {} (seconds).",
            TIMEOUT_SECONDS.start(),
            TIMEOUT_SECONDS.end()
        ),
    ))
}

pub fn init_timeout(seconds: i64) -> Result<u32, ApiError> {
    if (1..=300).contains(&seconds) {
        return Ok(seconds as u32);
    }
    Err(ApiError::new(
        "LimitExceeded.InitTimeout",
        format!("InitTimeout {seconds} is not valid: it must be 1 to 300 (seconds)."),
    ))
}

pub fn description(text: &str) -> Result<(), ApiError> {
    if text.chars().count() <= MAX_DESCRIPTION_CHARS {
        return Ok(());
    }
    Err(ApiError::new(
        "InvalidParameterValue.Description",
        format!("Description is longer than {MAX_DESCRIPTION_CHARS} characters."),
    ))
}

/// Checks user variables: names, reserved prefixes, total size.
pub fn environment(env: &Environment) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut size = 0;
    for var in env.variables.iter().flatten() {
        let key = var.key.clone().unwrap_or_default();
        let value = var.value.clone().unwrap_or_default();
        if !ENV_KEY.is_match(&key) {
            return Err(ApiError::new(
                "InvalidParameterValue.Environment",
                format!(
                    "Environment variable name `{key}` is not valid: it must start with a letter and hold only letters, digits and `_`."
                ),
            ));
        }
        if let Some(prefix) = RESERVED_ENV_PREFIXES.iter().find(|p| key.starts_with(*p)) {
            return Err(ApiError::new(
                "InvalidParameterValue.EnvironmentSystemProtect",
                format!("Environment variable `{key}` uses the reserved prefix `{prefix}`."),
            ));
        }
        size += key.len() + value.len();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(existing) => existing.1 = value,
            None => out.push((key, value)),
        }
    }
    if size > MAX_ENVIRONMENT_BYTES {
        return Err(ApiError::new(
            "InvalidParameterValue.EnvironmentExceededLimit",
            format!("Environment variables add up to {size} bytes; the limit is {MAX_ENVIRONMENT_BYTES}."),
        ));
    }
    Ok(out)
}

/// `"TRUE"` / `"FALSE"` flags.
pub fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("") | Some("FALSE") => Ok(false),
        Some("TRUE") => Ok(true),
        Some(other) => {
            Err(ApiError::new("InvalidParameterValue", format!("{name} must be TRUE or FALSE, not `{other}`.")))
        }
    }
}
