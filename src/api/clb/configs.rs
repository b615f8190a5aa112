//! Layer-7 custom configurations: SetCustomizedConfigForLoadBalancer (instance-level, `CLB`), AddCustomizedConfig,
//! ModifyCustomizedConfig, DeleteCustomizedConfig, AssociateCustomizedConfig, DisassociateCustomizedConfig and the
//! two Describe actions. The content is checked here (`snapshot::custom`); the state keeps bindings consistent.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::rules::normalize_domain;
use crate::api::params::{Filter, filters, obj, page, parse, unknown_filter};
use crate::api::{ApiError, Ctx};
use crate::snapshot::custom::Settings;
use crate::state::{Command, ConfigKind, ConfigPlace, CustomConfig, State};

/// The longest configuration name.
const MAX_NAME_CHARS: usize = 60;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SetForLoadBalancer {
    operation_type: String,
    uconfig_id: Option<String>,
    config_content: Option<String>,
    config_name: Option<String>,
    load_balancer_ids: Option<Vec<String>>,
}

/// SetCustomizedConfigForLoadBalancer: the instance-level (`CLB`) configuration's whole life in one action.
pub async fn set_for_load_balancer(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: SetForLoadBalancer = parse(p)?;
    let id = || req.uconfig_id.clone().ok_or_else(|| ApiError::missing("UconfigId"));
    let lbs = || match &req.load_balancer_ids {
        Some(ids) if !ids.is_empty() => Ok(ids.clone()),
        _ => Err(ApiError::missing("LoadBalancerIds")),
    };
    match req.operation_type.as_str() {
        "ADD" => {
            let name = req.config_name.clone().ok_or_else(|| ApiError::missing("ConfigName"))?;
            let content = req.config_content.clone().ok_or_else(|| ApiError::missing("ConfigContent"))?;
            let id = add(ctx, ConfigKind::Clb, name, content).await?;
            Ok(obj([("ConfigId", id.into())]))
        }
        "UPDATE" => {
            modify(ctx, &id()?, req.config_name.clone(), req.config_content.clone()).await?;
            Ok(obj([("ConfigId", id()?.into())]))
        }
        "DELETE" => {
            ctx.apply(Command::DeleteCustomConfigs { scope: ctx.scope.clone(), ids: vec![id()?] }, None).await?;
            Ok(obj([("ConfigId", id()?.into())]))
        }
        op @ ("BIND" | "UNBIND") => {
            let lbs = lbs()?;
            let places = lbs.iter().cloned().map(ConfigPlace::LoadBalancer).collect();
            let command = Command::BindCustomConfig { scope: ctx.scope.clone(), id: id()?, places, bind: op == "BIND" };
            ctx.apply(command, Some(lbs)).await?;
            Ok(obj([("ConfigId", id()?.into())]))
        }
        other => Err(ApiError::new(
            "InvalidParameterValue",
            format!("OperationType `{other}` is not one of ADD, DELETE, UPDATE, BIND and UNBIND."),
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Add {
    config_name: String,
    config_type: String,
    config_content: String,
}

/// AddCustomizedConfig: a configuration of any type, bound later.
pub async fn add_config(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: Add = parse(p)?;
    let id = add(ctx, config_kind(&req.config_type)?, req.config_name, req.config_content).await?;
    Ok(obj([("ConfigId", id.into())]))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Modify {
    uconfig_id: String,
    config_name: Option<String>,
    config_content: Option<String>,
}

/// ModifyCustomizedConfig: a new name or content; every place it is bound to takes it at once.
pub async fn modify_config(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: Modify = parse(p)?;
    modify(ctx, &req.uconfig_id, req.config_name, req.config_content).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Delete {
    uconfig_id_list: Vec<String>,
}

/// DeleteCustomizedConfig: configurations bound nowhere.
pub async fn delete_config(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: Delete = parse(p)?;
    if req.uconfig_id_list.is_empty() {
        return Err(ApiError::missing("UconfigIdList"));
    }
    ctx.apply(Command::DeleteCustomConfigs { scope: ctx.scope.clone(), ids: req.uconfig_id_list }, None).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Associate {
    uconfig_id: String,
    bind_list: Vec<BindItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BindItem {
    load_balancer_id: String,
    listener_id: String,
    domain: String,
    location_id: Option<String>,
}

/// AssociateCustomizedConfig (`bind`) and DisassociateCustomizedConfig: a `SERVER` configuration to domains, a
/// `LOCATION` one to rules.
pub async fn associate(ctx: &Ctx<'_>, p: Map<String, Value>, bind: bool) -> Result<Map<String, Value>, ApiError> {
    let req: Associate = parse(p)?;
    if req.bind_list.is_empty() {
        return Err(ApiError::missing("BindList"));
    }
    let mut lbs = Vec::new();
    let places = req
        .bind_list
        .into_iter()
        .map(|item| {
            lbs.push(item.load_balancer_id.clone());
            let domain = normalize_domain(&item.domain);
            match item.location_id {
                Some(location_id) if !location_id.is_empty() => ConfigPlace::Rule {
                    lb_id: item.load_balancer_id,
                    listener_id: item.listener_id,
                    domain,
                    location_id,
                },
                _ => ConfigPlace::Domain { lb_id: item.load_balancer_id, listener_id: item.listener_id, domain },
            }
        })
        .collect();
    lbs.sort_unstable();
    lbs.dedup();
    let command = Command::BindCustomConfig { scope: ctx.scope.clone(), id: req.uconfig_id, places, bind };
    ctx.apply(command, Some(lbs)).await?;
    Ok(Map::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeList {
    config_type: String,
    offset: Option<i64>,
    limit: Option<i64>,
    config_name: Option<String>,
    uconfig_ids: Option<Vec<String>>,
    filters: Option<Vec<Filter>>,
}

/// DescribeCustomizedConfigList: one type's configurations, by name (contained), id or bound load balancer.
pub fn describe_list(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DescribeList = parse(p)?;
    let kind = config_kind(&req.config_type)?;
    let state = &ctx.snapshot.state;
    let mut lb_filter: Option<Vec<String>> = None;
    for filter in filters(req.filters)? {
        match filter.name.as_str() {
            "loadbalancer-id" => lb_filter = Some(filter.values),
            "vip" => {
                let ids = state.load_balancers.values().filter(|lb| filter.values.contains(&lb.vip));
                lb_filter = Some(ids.map(|lb| lb.id.clone()).collect());
            }
            other => return Err(unknown_filter(other)),
        }
    }
    let configs: Vec<&CustomConfig> = state
        .custom_configs
        .values()
        .filter(|c| c.scope == ctx.scope && c.kind == kind)
        .filter(|c| req.config_name.as_ref().is_none_or(|name| c.name.contains(name.as_str())))
        .filter(|c| req.uconfig_ids.as_ref().is_none_or(|ids| ids.contains(&c.id)))
        .filter(|c| {
            lb_filter.as_ref().is_none_or(|lbs| state.config_places(&c.id).iter().any(|p| lbs.contains(place_lb(p))))
        })
        .collect();
    let total = configs.len();
    let configs = page(configs, req.offset, req.limit, 20, 100)?;
    let list: Vec<Value> = configs
        .iter()
        .map(|c| {
            json!({
                "UconfigId": c.id,
                "ConfigType": c.kind.as_api(),
                "ConfigName": c.name,
                "ConfigContent": c.content,
                "CreateTimestamp": ctx.time(c.create_time),
                "UpdateTimestamp": ctx.time(c.update_time),
            })
        })
        .collect();
    Ok(obj([("ConfigList", list.into()), ("TotalCount", total.into())]))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeAssociations {
    uconfig_id: Option<String>,
    offset: Option<i64>,
    limit: Option<i64>,
    domain: Option<String>,
}

/// DescribeCustomizedConfigAssociateList: where a configuration (or every one of the account) is bound.
pub fn describe_associations(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DescribeAssociations = parse(p)?;
    let state = &ctx.snapshot.state;
    let ids: Vec<&String> = match &req.uconfig_id {
        Some(id) => vec![&state.custom_config(&ctx.scope, id)?.id],
        None => state.custom_configs.values().filter(|c| c.scope == ctx.scope).map(|c| &c.id).collect(),
    };
    let domain = req.domain.as_deref().map(normalize_domain);
    let mut items = Vec::new();
    for id in ids {
        for place in state.config_places(id) {
            let item = bind_detail(state, id, &place);
            if domain.as_ref().is_none_or(|d| item["Domain"].as_str() == Some(d.as_str())) {
                items.push(item);
            }
        }
    }
    let total = items.len();
    let items = page(items, req.offset, req.limit, 20, 100)?;
    Ok(obj([("BindList", items.into()), ("TotalCount", total.into())]))
}

async fn add(ctx: &Ctx<'_>, kind: ConfigKind, name: String, content: String) -> Result<String, ApiError> {
    check_name(&name)?;
    check_content(&content)?;
    let now = crate::clock::now_ms();
    let id = crate::ids::resource_id("pz");
    let config = CustomConfig {
        id: id.clone(),
        scope: ctx.scope.clone(),
        name,
        kind,
        content,
        create_time: now,
        update_time: now,
    };
    ctx.apply(Command::PutCustomConfig(config), None).await?;
    Ok(id)
}

async fn modify(ctx: &Ctx<'_>, id: &str, name: Option<String>, content: Option<String>) -> Result<(), ApiError> {
    let mut config = ctx.snapshot.state.custom_config(&ctx.scope, id)?.clone();
    if name.is_none() && content.is_none() {
        return Err(ApiError::missing("ConfigContent"));
    }
    if let Some(name) = name {
        check_name(&name)?;
        config.name = name;
    }
    if let Some(content) = content {
        check_content(&content)?;
        config.content = content;
    }
    config.update_time = crate::clock::now_ms();
    let lbs = ctx.snapshot.state.config_places(id).iter().map(|p| place_lb(p).clone()).collect();
    ctx.apply(Command::PutCustomConfig(config), Some(lbs)).await?;
    Ok(())
}

fn config_kind(value: &str) -> Result<ConfigKind, ApiError> {
    ConfigKind::parse(value).ok_or_else(|| {
        ApiError::new("InvalidParameterValue", format!("ConfigType `{value}` is not one of CLB, SERVER and LOCATION."))
    })
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::new(
            "InvalidParameterValue.Length",
            format!("ConfigName must be 1 to {MAX_NAME_CHARS} characters."),
        ));
    }
    Ok(())
}

fn check_content(content: &str) -> Result<(), ApiError> {
    Settings::parse(content)
        .map(drop)
        .map_err(|e| ApiError::new("InvalidParameterValue", format!("ConfigContent is not valid: {e}.")))
}

fn place_lb(place: &ConfigPlace) -> &String {
    match place {
        ConfigPlace::LoadBalancer(lb_id) | ConfigPlace::Domain { lb_id, .. } | ConfigPlace::Rule { lb_id, .. } => lb_id,
    }
}

/// A `BindDetailItem`.
fn bind_detail(state: &State, id: &str, place: &ConfigPlace) -> Value {
    let (lb_id, listener_id, domain, location_id) = match place {
        ConfigPlace::LoadBalancer(lb_id) => (lb_id, None, None, None),
        ConfigPlace::Domain { lb_id, listener_id, domain } => (lb_id, Some(listener_id), Some(domain), None),
        ConfigPlace::Rule { lb_id, listener_id, domain, location_id } => {
            (lb_id, Some(listener_id), Some(domain), Some(location_id))
        }
    };
    let listener = listener_id.and_then(|l| state.listeners.get(l));
    let url = location_id.and_then(|l| state.rules.get(l)).map(|r| r.url.clone());
    json!({
        "LoadBalancerId": lb_id,
        "ListenerId": listener_id,
        "Domain": domain,
        "LocationId": location_id.map_or("", String::as_str),
        "ListenerName": listener.map(|l| l.name.clone()),
        "Protocol": listener.map(|l| l.protocol.as_api()),
        "Vport": listener.map(|l| l.port),
        "Url": url,
        "UconfigId": id,
    })
}
