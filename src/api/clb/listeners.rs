//! CreateListener, DescribeListeners, DeleteListener.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::health_check_output;
use super::rules::rule_output;
use crate::api::params::{obj, parse};
use crate::api::{ApiError, Ctx};
use crate::state::{Command, HealthCheck, Listener, ListenerChange, NewListener, Protocol};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateListener {
    load_balancer_id: String,
    ports: Vec<i64>,
    protocol: String,
    listener_names: Option<Vec<String>>,
    certificate: Option<Value>,
    multi_cert_info: Option<Value>,
    session_expire_time: Option<i64>,
    scheduler: Option<String>,
    health_check: Option<Value>,
    sni_switch: Option<i64>,
    keepalive_enable: Option<i64>,
    end_port: Option<i64>,
}

pub async fn create(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: CreateListener = parse(p)?;
    let protocol = Protocol::parse(&req.protocol).ok_or_else(|| {
        ApiError::new(
            "InvalidParameterValue",
            format!("Protocol must be TCP, UDP, HTTP, HTTPS, TCP_SSL or QUIC, not `{}`.", req.protocol),
        )
    })?;
    if req.ports.is_empty() {
        return Err(ApiError::missing("Ports"));
    }
    if req.end_port.is_some_and(|p| p != 0) {
        return Err(ApiError::new("UnsupportedOperation", "Port ranges (EndPort) are not supported by this server."));
    }
    let names = req.listener_names.unwrap_or_default();
    if !names.is_empty() && names.len() != req.ports.len() {
        return Err(ApiError::new("InvalidParameter", "ListenerNames must name every port in Ports, in order."));
    }
    let sni = match req.sni_switch.unwrap_or(0) {
        0 => false,
        1 if protocol == Protocol::Https => true,
        _ => {
            return Err(ApiError::new("InvalidParameterValue", "SniSwitch is 0 or 1, and 1 only for HTTPS listeners."));
        }
    };
    let needs_certificate = protocol.has_listener_certificates(sni);
    if needs_certificate && req.certificate.is_none() && req.multi_cert_info.is_none() {
        return Err(ApiError::missing("Certificate"));
    }
    let tls = super::certificates::read(ctx, req.certificate, req.multi_cert_info)?;
    if tls.is_some() && !needs_certificate {
        return Err(ApiError::new(
            "InvalidParameter",
            "Certificates belong to HTTPS listeners without SNI and TCP_SSL listeners (with SNI, to domains).",
        ));
    }
    let scheduler = listener_scheduler(req.scheduler.unwrap_or_else(|| "WRR".to_string()))?;
    let session_expire_time = listener_session_time(req.session_expire_time.unwrap_or(0))?;
    let keepalive_enable = match req.keepalive_enable.unwrap_or(0) {
        0 => false,
        1 => true,
        _ => {
            return Err(ApiError::new("InvalidParameterValue", "KeepaliveEnable must be 0 or 1."));
        }
    };
    // Layer-4 listeners check their targets with a TCP connect; layer-7 ones check per rule.
    let health_check = match req.health_check {
        Some(value) if !protocol.is_layer7() => super::health_check_input(value, &HealthCheck::default(), true)?,
        _ => HealthCheck::default(),
    };
    let mut listeners = Vec::with_capacity(req.ports.len());
    for (i, port) in req.ports.iter().enumerate() {
        let port = u16::try_from(*port).ok().filter(|p| *p >= 1).ok_or_else(|| {
            ApiError::new("InvalidParameterValue.Range", format!("Port {port} is not valid: ports are 1 to 65535."))
        })?;
        listeners.push(NewListener {
            id: crate::ids::resource_id("lbl"),
            name: names.get(i).cloned().unwrap_or_else(|| format!("{}-{port}", req.protocol)),
            protocol,
            port,
            scheduler: scheduler.clone(),
            session_expire_time,
            sni_switch: sni,
            keepalive_enable,
            tls: tls.as_ref().map(|t| t.settings.clone()),
            health_check: health_check.clone(),
        });
    }
    let ids: Vec<String> = listeners.iter().map(|l| l.id.clone()).collect();
    let lb_id = req.load_balancer_id;
    let vip: IpAddr =
        ctx.snapshot.state.load_balancer(&ctx.scope, &lb_id)?.vip.parse().map_err(|_| ApiError::internal())?;
    let addrs: Vec<SocketAddr> = if crate::snapshot::serves(protocol) {
        listeners.iter().map(|l| SocketAddr::new(vip, l.port)).collect()
    } else {
        Vec::new()
    };
    let create = Command::CreateListeners {
        scope: ctx.scope.clone(),
        lb_id: lb_id.clone(),
        listeners,
        now: crate::clock::now_ms(),
    };
    let command = with_certificates(tls.map(|t| t.new_certificates).unwrap_or_default(), create);
    // Refuse what the state refuses before touching the host, then make sure each port can be bound.
    ctx.snapshot.state.try_apply(command.clone())?;
    let sockets = &ctx.api.sockets;
    let udp = protocol.transport_is_udp();
    for (i, addr) in addrs.iter().enumerate() {
        if let Err(e) = sockets.reserve(*addr, udp) {
            addrs[..i].iter().for_each(|a| sockets.release(a, udp));
            return Err(ApiError::new(
                "InvalidParameter.PortCheckFailed",
                format!("Port {} cannot be bound on VIP {vip}: {e}.", addr.port()),
            ));
        }
    }
    if let Err(e) = ctx.apply(command, Some(vec![lb_id])).await {
        addrs.iter().for_each(|a| sockets.release(a, udp));
        return Err(e);
    }
    Ok(obj([("ListenerIds", json!(ids))]))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeListeners {
    load_balancer_id: String,
    listener_ids: Option<Vec<String>>,
    protocol: Option<String>,
    port: Option<i64>,
}

pub fn describe(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DescribeListeners = parse(p)?;
    let state = &ctx.snapshot.state;
    state.load_balancer(&ctx.scope, &req.load_balancer_id)?;
    let listeners: Vec<Value> = state
        .listeners_of(&req.load_balancer_id)
        .into_iter()
        .filter(|l| req.listener_ids.as_ref().is_none_or(|ids| ids.contains(&l.id)))
        .filter(|l| req.protocol.as_ref().is_none_or(|p| p == l.protocol.as_api()))
        .filter(|l| req.port.is_none_or(|p| p == i64::from(l.port)))
        .map(|l| listener_output(ctx, l))
        .collect();
    Ok(obj([("TotalCount", json!(listeners.len())), ("Listeners", json!(listeners))]))
}

fn listener_output(ctx: &Ctx<'_>, l: &Listener) -> Value {
    let layer7 = l.protocol.is_layer7();
    let rules: Value = if layer7 {
        json!(ctx.snapshot.state.rules_of(&l.id).into_iter().map(|r| rule_output(ctx, l, r)).collect::<Vec<_>>())
    } else {
        Value::Null
    };
    let certificate = super::certificates::output(l.tls.as_ref());
    json!({
        "ListenerId": l.id,
        "Protocol": l.protocol.as_api(),
        "Port": l.port,
        "Certificate": certificate,
        "HealthCheck": if layer7 { Value::Null } else { health_check_output(&l.health_check, true) },
        "Scheduler": if layer7 { Value::Null } else { json!(l.scheduler) },
        "SessionExpireTime": if layer7 { Value::Null } else { json!(l.session_expire_time) },
        "SniSwitch": i64::from(l.sni_switch),
        "Rules": rules,
        "ListenerName": l.name,
        "CreateTime": ctx.time(l.create_time),
        "EndPort": 0,
        "TargetType": "NODE",
        "TargetGroup": null,
        "SessionType": "NORMAL",
        "KeepaliveEnable": i64::from(l.keepalive_enable),
        "Toa": false,
        "DeregisterTargetRst": false,
        "AttrFlags": [],
        "TargetGroupList": null,
        "MaxConn": -1,
        "MaxCps": -1,
        "IdleConnectTimeout": null,
        "RescheduleInterval": 0,
        "DataCompressMode": "transparent",
        "RescheduleStartTime": 0,
    })
}

/// A layer-4 listener's `SessionExpireTime`, checked: 0 (off) or 30 to 3600 seconds.
fn listener_session_time(seconds: i64) -> Result<u32, ApiError> {
    match seconds {
        0 | 30..=3600 => Ok(seconds as u32),
        _ => Err(ApiError::new("InvalidParameterValue.Range", "SessionExpireTime must be 0, or 30 to 3600 seconds.")),
    }
}

/// A layer-4 listener's `Scheduler`, checked.
fn listener_scheduler(scheduler: String) -> Result<String, ApiError> {
    match scheduler.as_str() {
        "WRR" | "LEAST_CONN" => Ok(scheduler),
        _ => Err(ApiError::new(
            "InvalidParameterValue",
            format!("Scheduler must be WRR or LEAST_CONN, not `{scheduler}`."),
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteListener {
    load_balancer_id: String,
    listener_id: String,
}

pub async fn delete(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let req: DeleteListener = parse(p)?;
    let command = Command::DeleteListener {
        scope: ctx.scope.clone(),
        lb_id: req.load_balancer_id.clone(),
        listener_id: req.listener_id,
    };
    ctx.apply(command, Some(vec![req.load_balancer_id])).await?;
    Ok(Map::new())
}

/// A change that uses certificates given inline, applied together with keeping them.
pub fn with_certificates(mut new_certificates: Vec<Command>, change: Command) -> Command {
    if new_certificates.is_empty() {
        return change;
    }
    new_certificates.push(change);
    Command::Batch(new_certificates)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModifyListener {
    load_balancer_id: String,
    listener_id: String,
    listener_name: Option<String>,
    certificate: Option<Value>,
    multi_cert_info: Option<Value>,
    keepalive_enable: Option<i64>,
    scheduler: Option<String>,
    health_check: Option<Value>,
    session_expire_time: Option<i64>,
}

/// ModifyListener: the listener's name, `KeepaliveEnable`, certificates (replaced without dropping a connection:
/// new handshakes use the new ones) and, for layer-4 listeners, `Scheduler`, `SessionExpireTime` and
/// `HealthCheck` (the fields given over the current check), together. Other attributes are not changed by this
/// server yet and are refused when given.
pub async fn modify(ctx: &Ctx<'_>, p: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    super::refuse_unchangeable(&p, &["SniSwitch", "TargetType"])?;
    let req: ModifyListener = parse(p)?;
    let keepalive_enable = match req.keepalive_enable {
        None => None,
        Some(0) => Some(false),
        Some(1) => Some(true),
        Some(_) => return Err(ApiError::new("InvalidParameterValue", "KeepaliveEnable must be 0 or 1.")),
    };
    let listener = ctx.snapshot.state.listener(&ctx.scope, &req.load_balancer_id, &req.listener_id)?;
    let layer4_only = req.scheduler.is_some() || req.health_check.is_some() || req.session_expire_time.is_some();
    if layer4_only && listener.protocol.is_layer7() {
        return Err(ApiError::new(
            "InvalidParameter",
            "The Scheduler, SessionExpireTime and HealthCheck of HTTP and HTTPS listeners are their rules' \
             (ModifyRule).",
        ));
    }
    let scheduler = req.scheduler.map(listener_scheduler).transpose()?;
    let session_expire_time = req.session_expire_time.map(listener_session_time).transpose()?;
    let health_check =
        req.health_check.map(|value| super::health_check_input(value, &listener.health_check, true)).transpose()?;
    let mut changes = Vec::new();
    let mut new_certificates = Vec::new();
    if req.certificate.is_some() || req.multi_cert_info.is_some() {
        let Some(tls) = super::certificates::read(ctx, req.certificate, req.multi_cert_info)? else {
            return Err(ApiError::missing("Certificate"));
        };
        new_certificates = tls.new_certificates;
        changes.push(Command::SetListenerTls {
            scope: ctx.scope.clone(),
            lb_id: req.load_balancer_id.clone(),
            listener_id: req.listener_id.clone(),
            tls: tls.settings,
        });
    }
    let change =
        ListenerChange { name: req.listener_name, keepalive_enable, scheduler, session_expire_time, health_check };
    if change != ListenerChange::default() {
        changes.push(Command::ModifyListener {
            scope: ctx.scope.clone(),
            lb_id: req.load_balancer_id.clone(),
            listener_id: req.listener_id,
            change,
        });
    }
    let change = match changes.len() {
        0 => {
            return Err(ApiError::new(
                "MissingParameter",
                "Give at least one attribute to change: ListenerName, KeepaliveEnable, Certificate, MultiCertInfo, \
                 Scheduler, SessionExpireTime or HealthCheck.",
            ));
        }
        1 => changes.remove(0),
        _ => Command::Batch(changes),
    };
    ctx.apply(with_certificates(new_certificates, change), Some(vec![req.load_balancer_id])).await?;
    Ok(Map::new())
}
