//! The action table: every action fnlb serves, with its documented request parameters.

use serde_json::{Map, Value};

use super::{ApiError, Ctx, clb, scf};

#[cfg(test)]
mod tests;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Scf,
    Clb,
}

impl Service {
    /// The service named in a TC3 credential scope.
    pub fn parse(name: &str) -> Option<Service> {
        match name {
            "scf" => Some(Service::Scf),
            "clb" => Some(Service::Clb),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::Scf => "scf",
            Service::Clb => "clb",
        }
    }

    /// The API version (`X-TC-Version`) this server speaks for the service.
    pub fn version(self) -> &'static str {
        match self {
            Service::Scf => "2018-04-16",
            Service::Clb => "2018-03-17",
        }
    }
}

/// An action and the request parameters Tencent documents for it (any other is `UnknownParameter`).
pub struct ActionInfo {
    pub service: Service,
    pub name: &'static str,
    pub params: &'static [&'static str],
}

const fn scf(name: &'static str, params: &'static [&'static str]) -> ActionInfo {
    ActionInfo { service: Service::Scf, name, params }
}

const fn clb(name: &'static str, params: &'static [&'static str]) -> ActionInfo {
    ActionInfo { service: Service::Clb, name, params }
}

pub const ACTIONS: &[ActionInfo] = &[
    scf(
        "CreateFunction",
        &[
            "FunctionName",
            "Code",
            "Handler",
            "Description",
            "MemorySize",
            "Timeout",
            "Environment",
            "Runtime",
            "VpcConfig",
            "Namespace",
            "Role",
            "InstallDependency",
            "ClsLogsetId",
            "ClsTopicId",
            "Type",
            "CodeSource",
            "Layers",
            "DeadLetterConfig",
            "PublicNetConfig",
            "CfsConfig",
            "InitTimeout",
            "Tags",
            "AsyncRunEnable",
            "TraceEnable",
            "AutoDeployClsTopicIndex",
            "AutoCreateClsTopic",
            "ProtocolType",
            "ProtocolParams",
            "InstanceConcurrencyConfig",
            "DnsCache",
            "IntranetConfig",
        ],
    ),
    scf("GetFunction", &["FunctionName", "Qualifier", "Namespace", "ShowCode"]),
    scf("ListFunctions", &["Order", "Orderby", "Offset", "Limit", "SearchKey", "Namespace", "Description", "Filters"]),
    scf(
        "UpdateFunctionCode",
        &[
            "FunctionName",
            "Handler",
            "CosBucketName",
            "CosObjectName",
            "ZipFile",
            "Namespace",
            "CosBucketRegion",
            "InstallDependency",
            "EnvId",
            "Publish",
            "Code",
            "CodeSource",
        ],
    ),
    scf(
        "UpdateFunctionConfiguration",
        &[
            "FunctionName",
            "Description",
            "MemorySize",
            "Timeout",
            "Runtime",
            "Environment",
            "Namespace",
            "VpcConfig",
            "Role",
            "InstallDependency",
            "ClsLogsetId",
            "ClsTopicId",
            "Publish",
            "L5Enable",
            "Layers",
            "DeadLetterConfig",
            "PublicNetConfig",
            "CfsConfig",
            "InitTimeout",
            "ProtocolParams",
            "InstanceConcurrencyConfig",
            "DnsCache",
            "IntranetConfig",
            "IgnoreSysLog",
        ],
    ),
    scf("DeleteFunction", &["FunctionName", "Namespace", "Qualifier"]),
    scf(
        "Invoke",
        &["FunctionName", "InvocationType", "Qualifier", "ClientContext", "LogType", "Namespace", "RoutingKey"],
    ),
    scf("InvokeFunction", &["FunctionName", "Qualifier", "Event", "LogType", "Namespace", "RoutingKey"]),
    scf("ListTriggers", &["FunctionName", "Namespace", "Offset", "Limit", "OrderBy", "Order", "Filters"]),
    scf("PublishVersion", &["FunctionName", "Description", "Namespace"]),
    scf("ListVersionByFunction", &["FunctionName", "Namespace", "Offset", "Limit", "Order", "OrderBy"]),
    scf("CreateAlias", &["Name", "FunctionName", "FunctionVersion", "Namespace", "RoutingConfig", "Description"]),
    scf("GetAlias", &["FunctionName", "Name", "Namespace"]),
    scf("UpdateAlias", &["FunctionName", "Name", "FunctionVersion", "Namespace", "RoutingConfig", "Description"]),
    scf("DeleteAlias", &["FunctionName", "Name", "Namespace"]),
    scf("ListAliases", &["FunctionName", "Namespace", "FunctionVersion", "Offset", "Limit"]),
    scf("GetRequestStatus", &["FunctionName", "FunctionRequestId", "Namespace", "StartTime", "EndTime"]),
    scf("CreateNamespace", &["Namespace", "Description", "ResourceEnv"]),
    scf("ListNamespaces", &["Limit", "Offset", "Orderby", "Order", "SearchKey"]),
    scf("UpdateNamespace", &["Namespace", "Description"]),
    scf("DeleteNamespace", &["Namespace"]),
    scf("PutReservedConcurrencyConfig", &["FunctionName", "ReservedConcurrencyMem", "Namespace"]),
    scf("GetReservedConcurrencyConfig", &["FunctionName", "Namespace"]),
    scf("DeleteReservedConcurrencyConfig", &["FunctionName", "Namespace"]),
    scf(
        "PutProvisionedConcurrencyConfig",
        &[
            "FunctionName",
            "Qualifier",
            "VersionProvisionedConcurrencyNum",
            "Namespace",
            "TriggerActions",
            "ProvisionedType",
            "TrackingTarget",
            "MinCapacity",
            "MaxCapacity",
        ],
    ),
    scf("GetProvisionedConcurrencyConfig", &["FunctionName", "Namespace", "Qualifier"]),
    scf("DeleteProvisionedConcurrencyConfig", &["FunctionName", "Qualifier", "Namespace"]),
    scf(
        "GetFunctionLogs",
        &[
            "FunctionName",
            "Offset",
            "Limit",
            "Order",
            "OrderBy",
            "Filter",
            "Namespace",
            "Qualifier",
            "FunctionRequestId",
            "StartTime",
            "EndTime",
            "SearchContext",
        ],
    ),
    clb(
        "CreateLoadBalancer",
        &[
            "LoadBalancerType",
            "Forward",
            "LoadBalancerName",
            "VpcId",
            "SubnetId",
            "ProjectId",
            "AddressIPVersion",
            "Number",
            "MasterZoneId",
            "ZoneId",
            "InternetAccessible",
            "VipIsp",
            "Tags",
            "Vip",
            "BandwidthPackageId",
            "ExclusiveCluster",
            "SlaType",
            "ClusterIds",
            "ClientToken",
            "SnatPro",
            "SnatIps",
            "ClusterTag",
            "SlaveZoneId",
            "EipAddressId",
            "LoadBalancerPassToTarget",
            "DynamicVip",
            "Egress",
            "LBChargePrepaid",
            "LBChargeType",
            "AccessLogTopicId",
            "AdvancedRoute",
            "AvailableZoneAffinityInfo",
        ],
    ),
    clb(
        "DescribeLoadBalancers",
        &[
            "LoadBalancerIds",
            "LoadBalancerType",
            "Forward",
            "LoadBalancerName",
            "Domain",
            "LoadBalancerVips",
            "BackendPublicIps",
            "BackendPrivateIps",
            "Offset",
            "Limit",
            "OrderBy",
            "OrderType",
            "SearchKey",
            "ProjectId",
            "WithRs",
            "VpcId",
            "SecurityGroup",
            "MasterZone",
            "Filters",
            "AdditionalFields",
        ],
    ),
    clb("DeleteLoadBalancer", &["LoadBalancerIds", "ForceDelete"]),
    clb(
        "CreateListener",
        &[
            "LoadBalancerId",
            "Ports",
            "Protocol",
            "ListenerNames",
            "HealthCheck",
            "Certificate",
            "SessionExpireTime",
            "Scheduler",
            "SniSwitch",
            "TargetType",
            "SessionType",
            "KeepaliveEnable",
            "EndPort",
            "DeregisterTargetRst",
            "MultiCertInfo",
            "MaxConn",
            "MaxCps",
            "IdleConnectTimeout",
            "ProxyProtocol",
            "SnatEnable",
            "FullEndPorts",
            "H2cSwitch",
            "SslCloseSwitch",
            "DataCompressMode",
            "RescheduleTargetZeroWeight",
            "RescheduleUnhealthy",
            "RescheduleExpandTarget",
            "RescheduleStartTime",
            "RescheduleInterval",
        ],
    ),
    clb("DescribeListeners", &["LoadBalancerId", "ListenerIds", "Protocol", "Port"]),
    clb("DeleteListener", &["LoadBalancerId", "ListenerId"]),
    clb("CreateRule", &["LoadBalancerId", "ListenerId", "Rules"]),
    clb("DeleteRule", &["LoadBalancerId", "ListenerId", "LocationIds", "Domain", "Url", "NewDefaultServerDomain"]),
    clb("RegisterFunctionTargets", &["LoadBalancerId", "ListenerId", "FunctionTargets", "LocationId", "Domain", "Url"]),
    clb(
        "DeregisterFunctionTargets",
        &["LoadBalancerId", "ListenerId", "FunctionTargets", "LocationId", "Domain", "Url"],
    ),
    clb("DescribeTargets", &["LoadBalancerId", "ListenerIds", "Protocol", "Port", "Filters"]),
    clb("DescribeTaskStatus", &["TaskId", "DealName"]),
];

/// Runs an action found in `ACTIONS`.
pub async fn dispatch(
    ctx: &Ctx<'_>,
    service: Service,
    action: &str,
    p: Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    match (service, action) {
        (Service::Scf, "CreateFunction") => scf::functions::create(ctx, p).await,
        (Service::Scf, "GetFunction") => scf::functions::get(ctx, p).await,
        (Service::Scf, "ListFunctions") => scf::functions::list(ctx, p),
        (Service::Scf, "UpdateFunctionCode") => scf::functions::update_code(ctx, p).await,
        (Service::Scf, "UpdateFunctionConfiguration") => scf::functions::update_configuration(ctx, p).await,
        (Service::Scf, "DeleteFunction") => scf::functions::delete(ctx, p).await,
        (Service::Scf, "Invoke") => scf::invoke::invoke(ctx, p).await,
        (Service::Scf, "InvokeFunction") => scf::invoke::invoke_function(ctx, p).await,
        (Service::Scf, "ListTriggers") => scf::triggers::list(ctx, p),
        (Service::Scf, "GetFunctionLogs") => scf::invoke::logs(ctx, p),
        (Service::Scf, "PublishVersion") => scf::versions::publish(ctx, p).await,
        (Service::Scf, "ListVersionByFunction") => scf::versions::list(ctx, p),
        (Service::Scf, "CreateAlias") => scf::versions::create_alias(ctx, p).await,
        (Service::Scf, "GetAlias") => scf::versions::get_alias(ctx, p),
        (Service::Scf, "UpdateAlias") => scf::versions::update_alias(ctx, p).await,
        (Service::Scf, "DeleteAlias") => scf::versions::delete_alias(ctx, p).await,
        (Service::Scf, "ListAliases") => scf::versions::list_aliases(ctx, p),
        (Service::Scf, "GetRequestStatus") => scf::invoke::request_status(ctx, p).await,
        (Service::Scf, "CreateNamespace") => scf::namespaces::create(ctx, p).await,
        (Service::Scf, "ListNamespaces") => scf::namespaces::list(ctx, p),
        (Service::Scf, "UpdateNamespace") => scf::namespaces::update(ctx, p).await,
        (Service::Scf, "DeleteNamespace") => scf::namespaces::delete(ctx, p).await,
        (Service::Scf, "PutReservedConcurrencyConfig") => scf::concurrency::put_reserved(ctx, p).await,
        (Service::Scf, "GetReservedConcurrencyConfig") => scf::concurrency::get_reserved(ctx, p),
        (Service::Scf, "DeleteReservedConcurrencyConfig") => scf::concurrency::delete_reserved(ctx, p).await,
        (Service::Scf, "PutProvisionedConcurrencyConfig") => scf::concurrency::put_provisioned(ctx, p).await,
        (Service::Scf, "GetProvisionedConcurrencyConfig") => scf::concurrency::get_provisioned(ctx, p),
        (Service::Scf, "DeleteProvisionedConcurrencyConfig") => scf::concurrency::delete_provisioned(ctx, p).await,
        (Service::Clb, "CreateLoadBalancer") => clb::load_balancers::create(ctx, p).await,
        (Service::Clb, "DescribeLoadBalancers") => clb::load_balancers::describe(ctx, p),
        (Service::Clb, "DeleteLoadBalancer") => clb::load_balancers::delete(ctx, p).await,
        (Service::Clb, "CreateListener") => clb::listeners::create(ctx, p).await,
        (Service::Clb, "DescribeListeners") => clb::listeners::describe(ctx, p),
        (Service::Clb, "DeleteListener") => clb::listeners::delete(ctx, p).await,
        (Service::Clb, "CreateRule") => clb::rules::create(ctx, p).await,
        (Service::Clb, "DeleteRule") => clb::rules::delete(ctx, p).await,
        (Service::Clb, "RegisterFunctionTargets") => clb::targets::register_functions(ctx, p).await,
        (Service::Clb, "DeregisterFunctionTargets") => clb::targets::deregister_functions(ctx, p).await,
        (Service::Clb, "DescribeTargets") => clb::targets::describe(ctx, p),
        (Service::Clb, "DescribeTaskStatus") => clb::tasks::describe(ctx, p).await,
        _ => Err(ApiError::new("InvalidAction", format!("The action `{action}` is not implemented."))),
    }
}
