//! SCF (`2018-04-16`) actions.

pub mod concurrency;
pub mod functions;
pub mod invoke;
pub mod namespaces;
pub mod triggers;
pub mod validate;
pub mod versions;

use serde::Deserialize;

use super::{ApiError, Ctx};
use crate::state::{DEFAULT_NAMESPACE, FunctionKey};

/// `{"Key": …, "Value": …}`, as `Environment.Variables` holds them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Variable {
    pub key: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Environment {
    pub variables: Option<Vec<Variable>>,
}

/// The function a request names, in the caller's account and region.
pub fn function_key(ctx: &Ctx<'_>, name: &str, namespace: Option<&str>) -> Result<FunctionKey, ApiError> {
    let namespace = namespace.filter(|n| !n.is_empty()).unwrap_or(DEFAULT_NAMESPACE);
    validate::namespace(namespace)?;
    Ok(FunctionKey { scope: ctx.scope.clone(), namespace: namespace.to_string(), name: name.to_string() })
}

/// The key of a function of the caller's that must exist (`ResourceNotFound.Function` otherwise).
pub fn existing(ctx: &Ctx<'_>, name: &str, namespace: Option<&str>) -> Result<FunctionKey, ApiError> {
    let key = function_key(ctx, name, namespace)?;
    ctx.snapshot.state.function(&key)?;
    Ok(key)
}
