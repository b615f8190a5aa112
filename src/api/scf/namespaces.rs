//! CreateNamespace, ListNamespaces, UpdateNamespace, DeleteNamespace.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::validate;
use crate::api::params::{obj, page, parse};
use crate::api::{ApiError, Ctx};
use crate::state::{Command, DEFAULT_NAMESPACE};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateNamespace {
    namespace: String,
    description: Option<String>,
}

pub async fn create(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: CreateNamespace = parse(p)?;
    validate::namespace_name(&req.namespace)?;
    let description = req.description.unwrap_or_default();
    validate::description(&description)?;
    let command = Command::CreateNamespace {
        scope: ctx.scope.clone(),
        name: req.namespace,
        description,
        now: crate::clock::now_ms(),
    };
    ctx.apply(command, None).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateNamespace {
    namespace: String,
    description: String,
}

pub async fn update(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: UpdateNamespace = parse(p)?;
    validate::namespace_name(&req.namespace)?;
    validate::description(&req.description)?;
    let command = Command::UpdateNamespace {
        scope: ctx.scope.clone(),
        name: req.namespace,
        description: req.description,
        now: crate::clock::now_ms(),
    };
    ctx.apply(command, None).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteNamespace {
    namespace: String,
}

pub async fn delete(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DeleteNamespace = parse(p)?;
    validate::namespace_name(&req.namespace)?;
    ctx.apply(Command::DeleteNamespace { scope: ctx.scope.clone(), name: req.namespace }, None).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SearchKey {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListNamespaces {
    limit: Option<i64>,
    offset: Option<i64>,
    orderby: Option<String>,
    order: Option<String>,
    search_key: Option<Vec<SearchKey>>,
}

/// One namespace as listed: (name, description, added, modified).
type Listed = (String, String, i64, i64);

pub fn list(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: ListNamespaces = parse(p)?;
    let state = &ctx.snapshot.state;
    let since = ctx.account.created_ms;
    let mut all: Vec<Listed> = vec![(DEFAULT_NAMESPACE.to_string(), String::new(), since, since)];
    all.extend(
        state
            .namespaces
            .values()
            .filter(|n| n.scope == ctx.scope)
            .map(|n| (n.name.clone(), n.description.clone(), n.add_time, n.mod_time)),
    );
    for search in req.search_key.unwrap_or_default() {
        match search.key.as_str() {
            "Namespace" => all.retain(|n| n.0.contains(&search.value)),
            "Description" => all.retain(|n| n.1.contains(&search.value)),
            other => {
                return Err(ApiError::new(
                    "InvalidParameterValue.SearchKey",
                    format!("SearchKey.Key must be Namespace or Description, not `{other}`."),
                ));
            }
        }
    }
    match req.orderby.as_deref() {
        None | Some("Name") => all.sort_by(|a, b| a.0.cmp(&b.0)),
        Some("Updatetime") => all.sort_by_key(|n| (n.3, n.0.clone())),
        Some(other) => {
            return Err(ApiError::new(
                "InvalidParameterValue.Orderby",
                format!("Orderby must be Name or Updatetime, not `{other}`."),
            ));
        }
    }
    match req.order.as_deref() {
        None | Some("ASC") => {}
        Some("DESC") => all.reverse(),
        Some(other) => {
            return Err(ApiError::new(
                "InvalidParameterValue.Order",
                format!("Order must be ASC or DESC, not `{other}`."),
            ));
        }
    }
    let total = all.len();
    let shown: Vec<Value> = page(all, req.offset, req.limit, 20, 100)?
        .into_iter()
        .map(|(name, description, added, modified)| {
            json!({
                "ModTime": ctx.time(modified),
                "AddTime": ctx.time(added),
                "Description": description,
                "Name": name,
                "Type": "default",
            })
        })
        .collect();
    Ok(obj([("Namespaces", json!(shown)), ("TotalCount", json!(total))]))
}
