//! Reading request parameters into typed structs, with Tencent's errors for missing and malformed ones.
//!
//! Parameters come as JSON (TC3 POST) or flattened into a query string or form (TC3 GET, signature v1), where
//! every value is a string. The handlers of a flattened request run within `flattened`, and there `parse` reads a
//! string as the number or boolean its field asks for (`flat::Lenient`); a JSON request's types are kept as sent.

use std::future::Future;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{ApiError, flat};

tokio::task_local! {
    /// Whether the parameters being handled came flattened (all strings).
    static FLATTENED: bool;
}

/// Runs the handling of a request whose parameters came flattened: its `parse` calls read strings as the numbers
/// and booleans their fields ask for.
pub async fn flattened<F: Future>(handling: F) -> F::Output {
    FLATTENED.scope(true, handling).await
}

/// Deserialises an action's parameters: a missing required one is `MissingParameter`, a value of the wrong type
/// `InvalidParameter`, both naming the parameter.
pub fn parse<T: DeserializeOwned>(params: Map<String, Value>) -> Result<T, ApiError> {
    let value = Value::Object(params);
    let parsed = match FLATTENED.try_with(|flattened| *flattened).unwrap_or(false) {
        true => serde_path_to_error::deserialize(flat::Lenient(value)),
        false => serde_path_to_error::deserialize(value),
    };
    parsed.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if let Some(rest) = inner.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or(rest);
            let name = if path == "." { field.to_string() } else { format!("{path}.{field}") };
            return ApiError::missing(&name);
        }
        let inner = inner.split(" at line ").next().unwrap_or(&inner).to_string();
        ApiError::new("InvalidParameter", format!("The parameter `{path}` is not valid: {inner}."))
    })
}

/// A paginated slice: `Offset` default 0, `Limit` default `default`, at most `max`.
pub fn page<T>(
    items: Vec<T>,
    offset: Option<i64>,
    limit: Option<i64>,
    default: i64,
    max: i64,
) -> Result<Vec<T>, ApiError> {
    let offset = offset.unwrap_or(0);
    let limit = limit.unwrap_or(default);
    if offset < 0 {
        return Err(ApiError::new("InvalidParameterValue.Offset", "Offset must be 0 or more."));
    }
    if !(0..=max).contains(&limit) {
        return Err(ApiError::new("InvalidParameterValue.Limit", format!("Limit must be between 0 and {max}.")));
    }
    Ok(items.into_iter().skip(offset as usize).take(limit as usize).collect())
}

/// `Map` building for responses: `obj([("A", v)…])`.
pub fn obj<const N: usize>(fields: [(&str, Value); N]) -> Map<String, Value> {
    fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// One of a List or Describe action's `Filters`: a name and the values any of which matches.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

/// The most filters one request may name (Tencent's limit).
pub const MAX_FILTERS: usize = 10;

/// Checks the number of filters and answers for one whose name the action does not know.
pub fn filters(given: Option<Vec<Filter>>) -> Result<Vec<Filter>, ApiError> {
    let given = given.unwrap_or_default();
    if given.len() > MAX_FILTERS {
        return Err(ApiError::new(
            "InvalidParameterValue.Filters",
            format!("At most {MAX_FILTERS} filters may be given."),
        ));
    }
    Ok(given)
}

/// The answer for a filter the action does not have.
pub fn unknown_filter(name: &str) -> ApiError {
    ApiError::new("InvalidParameterValue.Filters", format!("Filter `{name}` is not supported by this action."))
}
