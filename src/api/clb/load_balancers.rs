//! CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::params::{Filter, filters, obj, page, parse, unknown_filter};
use crate::api::{ApiError, Ctx};
use crate::state::{Command, IpVersion, LoadBalancer, LoadBalancerType, NewLoadBalancer};

/// The VPC an instance is created in when the request names none.
pub const DEFAULT_VPC_ID: &str = "vpc-default";
/// `VpcId` `0`: the classic (basic) network, where functions cannot be bound (contract 5.5).
pub const CLASSIC_NETWORK_VPC_ID: &str = "0";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagInfo {
    tag_key: String,
    tag_value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateLoadBalancer {
    load_balancer_type: String,
    forward: Option<i64>,
    load_balancer_name: Option<String>,
    vpc_id: Option<String>,
    subnet_id: Option<String>,
    project_id: Option<i64>,
    #[serde(rename = "AddressIPVersion")]
    address_ip_version: Option<String>,
    number: Option<i64>,
    tags: Option<Vec<TagInfo>>,
    vip: Option<String>,
}

pub async fn create(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: CreateLoadBalancer = parse(p)?;
    let lb_type = match req.load_balancer_type.as_str() {
        "OPEN" => LoadBalancerType::Open,
        "INTERNAL" => LoadBalancerType::Internal,
        other => {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("LoadBalancerType must be OPEN or INTERNAL, not `{other}`."),
            ));
        }
    };
    let forward = match req.forward.unwrap_or(1) {
        f @ (0 | 1) => f as u8,
        other => {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("Forward must be 1 (or 0 for a classic load balancer), not {other}."),
            ));
        }
    };
    let ip_version = match req.address_ip_version.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("IPV4") => IpVersion::Ipv4,
        Some("IPV6") => IpVersion::Ipv6Nat64,
        Some("IPV6FULLCHAIN") => IpVersion::Ipv6FullChain,
        Some(_) => {
            return Err(ApiError::new(
                "InvalidParameterValue",
                "AddressIPVersion must be IPV4, IPV6 or IPv6FullChain.",
            ));
        }
    };
    if lb_type == LoadBalancerType::Internal && (req.vpc_id.is_none() || req.subnet_id.is_none()) {
        return Err(ApiError::new("InvalidParameter", "An INTERNAL load balancer needs VpcId and SubnetId."));
    }
    let name = req.load_balancer_name.unwrap_or_default();
    if name.chars().count() > 80 {
        return Err(ApiError::new("InvalidParameterValue.Length", "LoadBalancerName is longer than 80 characters."));
    }
    let number = req.number.unwrap_or(1);
    if !(1..=20).contains(&number) || (number > 1 && req.vip.is_some()) {
        return Err(ApiError::new("InvalidParameterValue.Range", "Number must be 1 to 20, and 1 when Vip is given."));
    }
    let tags: Vec<(String, String)> =
        req.tags.unwrap_or_default().into_iter().map(|t| (t.tag_key, t.tag_value)).collect();
    if tags.len() > 20 {
        return Err(ApiError::new("InvalidParameterValue.Length", "At most 20 tags may be given."));
    }
    let vip = req.vip.as_deref().map(checked_vip).transpose()?;
    let now = crate::clock::now_ms();
    let new: Vec<NewLoadBalancer> = (0..number)
        .map(|_| {
            let id = crate::ids::resource_id("lb");
            NewLoadBalancer {
                scope: ctx.scope.clone(),
                name: if name.is_empty() { id.clone() } else { name.clone() },
                id,
                lb_type,
                forward,
                ip_version,
                vip: vip.clone(),
                vpc_id: req.vpc_id.clone().unwrap_or_else(|| DEFAULT_VPC_ID.to_string()),
                subnet_id: req.subnet_id.clone().unwrap_or_default(),
                project_id: req.project_id.unwrap_or(0),
                tags: tags.clone(),
                now,
            }
        })
        .collect();
    let ids: Vec<String> = new.iter().map(|lb| lb.id.clone()).collect();
    ctx.apply(Command::CreateLoadBalancers(new), Some(ids.clone())).await?;
    Ok(obj([("LoadBalancerIds", json!(ids)), ("DealName", json!(ctx.request_id))]))
}

/// A VIP must be a unicast address of this host: one the load balancer can listen on.
fn checked_vip(vip: &str) -> Result<String, ApiError> {
    let ip: IpAddr = vip
        .parse()
        .map_err(|_| ApiError::new("InvalidParameterValue", format!("Vip `{vip}` is not an IP address.")))?;
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(ApiError::new("InvalidParameterValue", format!("Vip {ip} is not a unicast address.")));
    }
    if std::net::TcpListener::bind(SocketAddr::new(ip, 0)).is_err() {
        return Err(ApiError::new("InvalidParameterValue", format!("Vip {ip} is not an address of this host.")));
    }
    Ok(ip.to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeLoadBalancers {
    load_balancer_ids: Option<Vec<String>>,
    load_balancer_type: Option<String>,
    forward: Option<i64>,
    load_balancer_name: Option<String>,
    load_balancer_vips: Option<Vec<String>>,
    offset: Option<i64>,
    limit: Option<i64>,
    order_by: Option<String>,
    order_type: Option<i64>,
    search_key: Option<String>,
    project_id: Option<i64>,
    vpc_id: Option<String>,
    backend_private_ips: Option<Vec<String>>,
    filters: Option<Vec<Filter>>,
}

/// The `Filters` of DescribeLoadBalancers that fnlb knows; zones, ISPs and SLA types name nothing here, so they
/// match no instance.
const LOAD_BALANCER_FILTERS: &[&str] =
    &["charge-type", "internet-charge-type", "master-zone-id", "tag-key", "function-name", "vip-isp", "sla-type"];

/// Whether an instance matches one filter (any of its values).
fn matches(state: &crate::state::State, lb: &LoadBalancer, filter: &Filter) -> bool {
    let any = |value: &str| filter.values.iter().any(|v| v == value);
    match filter.name.as_str() {
        "charge-type" => any("POSTPAID_BY_HOUR"),
        "internet-charge-type" => any("TRAFFIC_POSTPAID_BY_HOUR"),
        "tag-key" => lb.tags.iter().any(|(key, _)| any(key)),
        "function-name" => {
            state.rules.values().any(|r| r.lb_id == lb.id && r.function.as_ref().is_some_and(|t| any(&t.name)))
        }
        name => match name.strip_prefix("tag:") {
            Some(key) => lb.tags.iter().any(|(k, v)| k == key && any(v)),
            None => false,
        },
    }
}

pub fn describe(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DescribeLoadBalancers = parse(p)?;
    let given = filters(req.filters)?;
    if let Some(unknown) =
        given.iter().find(|f| !LOAD_BALANCER_FILTERS.contains(&f.name.as_str()) && !f.name.starts_with("tag:"))
    {
        return Err(unknown_filter(&unknown.name));
    }
    let state = &ctx.snapshot.state;
    // Backends by address: server targets of the instance's rules and layer-4 listeners.
    let has_backend = |lb: &LoadBalancer, ips: &Vec<String>| {
        let rules = state.rules.values().filter(|r| r.lb_id == lb.id).flat_map(|r| r.servers.iter());
        let listeners = state.listeners.values().filter(|l| l.lb_id == lb.id).flat_map(|l| l.servers.iter());
        rules.chain(listeners).any(|t| ips.contains(&t.ip))
    };
    let mut lbs: Vec<&LoadBalancer> = state
        .load_balancers
        .values()
        .filter(|lb| lb.scope == ctx.scope)
        .filter(|lb| given.iter().all(|f| matches(state, lb, f)))
        .filter(|lb| req.backend_private_ips.as_ref().is_none_or(|ips| has_backend(lb, ips)))
        .filter(|lb| req.load_balancer_ids.as_ref().is_none_or(|ids| ids.contains(&lb.id)))
        .filter(|lb| req.load_balancer_type.as_ref().is_none_or(|t| t == lb.lb_type.as_api()))
        .filter(|lb| req.forward.is_none_or(|f| f == i64::from(lb.forward)))
        .filter(|lb| req.load_balancer_name.as_ref().is_none_or(|n| *n == lb.name))
        .filter(|lb| req.load_balancer_vips.as_ref().is_none_or(|v| v.contains(&lb.vip)))
        .filter(|lb| req.project_id.is_none_or(|p| p == lb.project_id))
        .filter(|lb| req.vpc_id.as_ref().is_none_or(|v| *v == lb.vpc_id))
        .filter(|lb| {
            req.search_key.as_ref().is_none_or(|k| {
                lb.name.contains(k.as_str()) || lb.id.contains(k.as_str()) || lb.vip.contains(k.as_str())
            })
        })
        .collect();
    match req.order_by.as_deref() {
        None | Some("CreateTime") => lbs.sort_by_key(|lb| (lb.create_time, lb.id.clone())),
        Some("LoadBalancerName") => lbs.sort_by(|a, b| a.name.cmp(&b.name)),
        Some("LoadBalancerType") => lbs.sort_by_key(|lb| lb.lb_type.as_api()),
        Some("Domain") => lbs.sort_by(|a, b| a.id.cmp(&b.id)),
        Some(other) => {
            return Err(ApiError::new("InvalidParameterValue", format!("OrderBy `{other}` is not supported.")));
        }
    }
    if req.order_type.unwrap_or(1) == 1 {
        lbs.reverse();
    }
    let total = lbs.len();
    let set: Vec<Value> = page(lbs, req.offset, req.limit, 20, 100)?.into_iter().map(|lb| output(ctx, lb)).collect();
    Ok(obj([("TotalCount", json!(total)), ("LoadBalancerSet", json!(set))]))
}

/// A `LoadBalancer` object, with the fields of Tencent's example (contract 3.6).
fn output(ctx: &Ctx<'_>, lb: &LoadBalancer) -> Value {
    let created = ctx.time(lb.create_time);
    let (version, mode) = match lb.ip_version {
        IpVersion::Ipv4 => ("ipv4", Value::Null),
        IpVersion::Ipv6Nat64 => ("ipv6", json!("IPv6Nat64")),
        IpVersion::Ipv6FullChain => ("ipv6", json!("IPv6FullChain")),
    };
    let tags: Vec<Value> = lb.tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect();
    let region = &lb.scope.region;
    // Server targets of its rules and layer-4 listeners, and bound functions.
    let state = &ctx.snapshot.state;
    let target_count: usize =
        state.listeners.values().filter(|l| l.lb_id == lb.id).map(|l| l.servers.len()).sum::<usize>()
            + state
                .rules
                .values()
                .filter(|r| r.lb_id == lb.id)
                .map(|r| r.servers.len() + usize::from(r.function.is_some()))
                .sum::<usize>();
    json!({
        "LoadBalancerId": lb.id,
        "LoadBalancerName": lb.name,
        "LoadBalancerType": lb.lb_type.as_api(),
        "Forward": lb.forward,
        "Domain": "",
        "LoadBalancerDomain": format!("{}.clb.{region}.fnlb.local", lb.id),
        "LoadBalancerVips": [lb.vip],
        "AddressIPv6": null,
        "AddressIPVersion": version,
        "IPv6Mode": mode,
        "Status": 1,
        "CreateTime": created,
        "StatusTime": created,
        "ProjectId": lb.project_id,
        "VpcId": lb.vpc_id,
        "NumericalVpcId": 0,
        "SubnetId": lb.subnet_id,
        "OpenBgp": 0,
        "Snat": false,
        "Isolation": 0,
        "Log": "",
        "AnycastZone": "",
        "TargetRegionInfo": {"Region": region, "VpcId": lb.vpc_id, "NumericalVpcId": 0},
        "SecureGroups": [],
        "Tags": tags,
        "MasterZone": null,
        "BackupZoneSet": null,
        "IsolatedTime": null,
        "ExpireTime": null,
        "ChargeType": "POSTPAID_BY_HOUR",
        "NetworkAttributes": {"InternetChargeType": "TRAFFIC_POSTPAID_BY_HOUR", "InternetMaxBandwidthOut": 10, "BandwidthpkgSubType": null},
        "PrepaidAttributes": null,
        "ExtraInfo": {"ZhiTong": false, "TgwGroupName": ""},
        "LogSetId": "",
        "LogTopicId": "",
        "LoadBalancerPassToTarget": false,
        "IsDDos": false,
        "ConfigId": lb.config_id.as_deref().unwrap_or(""),
        "ExclusiveCluster": {"L4Clusters": null, "L7Clusters": null, "ClassicalCluster": null},
        "SnatPro": false,
        "SnatIps": [],
        "IsBlock": false,
        "IsBlockTime": "",
        "SlaType": "",
        "ClusterTag": null,
        "LocalBgp": false,
        "MixIpTarget": false,
        "Zones": null,
        "NfvInfo": "",
        "HealthLogSetId": "",
        "HealthLogTopicId": "",
        "ClusterIds": null,
        "AttributeFlags": [],
        "VipIsp": "",
        "Egress": "",
        "Exclusive": 0,
        "TargetCount": target_count,
        "AssociateEndpoint": "",
        "AvailableZoneAffinityInfo": {"Enable": false, "ExitRatio": null, "ReentryRatio": null},
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteLoadBalancer {
    load_balancer_ids: Vec<String>,
    #[allow(dead_code)]
    force_delete: Option<bool>,
}

pub async fn delete(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DeleteLoadBalancer = parse(p)?;
    if req.load_balancer_ids.is_empty() || req.load_balancer_ids.len() > 20 {
        return Err(ApiError::new("InvalidParameterValue.Length", "LoadBalancerIds must name 1 to 20 load balancers."));
    }
    let ids = req.load_balancer_ids;
    ctx.apply(Command::DeleteLoadBalancers { scope: ctx.scope.clone(), ids: ids.clone() }, Some(ids)).await?;
    Ok(Map::new())
}
