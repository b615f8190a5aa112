//! API errors: a Tencent error code and a clear English message, decided in one place.

use crate::control::ControlError;
use crate::state::StateError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into() }
    }

    pub fn missing(name: &str) -> ApiError {
        ApiError::new("MissingParameter", format!("The parameter `{name}` is missing."))
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(code, message)
    }

    pub fn internal() -> ApiError {
        ApiError::new("InternalError", "An internal error occurred; the request was not carried out.")
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        match e {
            ControlError::Refused(e) => e.into(),
            ControlError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unreachable(why) => {
                tracing::warn!(reason = %why, "A request needing the store was refused: the store is unreachable.");
                ApiError::new(
                    "InternalError",
                    "The configuration store (PostgreSQL) is unreachable: the change was not made. This node keeps \
                     serving its last state; try again once the store is back.",
                )
            }
            e => {
                tracing::error!(error = %e, "The store failed.");
                ApiError::internal()
            }
        }
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> ApiError {
        use StateError::*;
        let code = match &e {
            AccountNotFound(_) => "AuthFailure.UnauthorizedOperation",
            NamespaceNotFound(_) => "ResourceNotFound.Namespace",
            NamespaceExists(_) => "ResourceInUse.Namespace",
            DefaultNamespace => "InvalidParameterValue.DefaultNamespace",
            NamespaceNotEmpty(_) => "FailedOperation.DeleteNamespace",
            NamespaceQuota { .. } => "LimitExceeded.Namespace",
            FunctionExists(_) => "ResourceInUse.Function",
            FunctionNotFound(_) => "ResourceNotFound.Function",
            TargetFunctionNotFound(_) => "ResourceNotFound",
            FunctionQuota { .. } => "LimitExceeded.Function",
            RuntimeChange(_) => "InvalidParameterValue.Runtime",
            LoadBalancerNotFound(_) => "InvalidParameter.LBIdNotFound",
            VipInUse(..) => "InvalidParameterValue",
            NoFreeVip => "ResourceInsufficient",
            LoadBalancerQuota { .. } => "LimitExceeded",
            ListenerNotFound(_) => "InvalidParameter.ListenerIdNotFound",
            PortInUse { .. } => "InvalidParameter.PortCheckFailed",
            ListenerQuota { .. } => "LimitExceeded",
            NotLayer7(..) => "InvalidParameter.ProtocolCheckFailed",
            RuleExists { .. } => "InvalidParameter",
            RuleQuota { .. } => "LimitExceeded",
            RuleNotFound(_) => "InvalidParameter.LocationNotFound",
            DomainNotFound(_) => "InvalidParameter",
            RuleHasFunction(..) => "LimitExceeded",
            TargetNotBound { .. } => "ResourceNotFound",
            AlreadyBound { .. } => "InvalidParameterValue.Duplicate",
            QualifierNotFound { .. } => "ResourceNotFound",
            VersionNotFound { .. } => "ResourceNotFound.FunctionVersion",
            AliasNotFound { .. } => "ResourceNotFound.Alias",
            AliasExists { .. } => "ResourceInUse.Alias",
            DefaultAlias => "InvalidParameterValue.Alias",
            VersionInUse { .. } | VersionBound { .. } => "UnsupportedOperation.AliasBind",
            ClassicLoadBalancer(_)
            | ClassicNetwork(_)
            | Ipv6FullChain(_)
            | WebFunction(_)
            | TraditionalAccount(_)
            | BindingRegion(_) => "UnsupportedOperation",
            RuleHasFunctionTarget(_) | RuleHasServers(_) | RuleHasFallback(_) | Layer7Targets(_) => "InvalidParameter",
            NoFallback(_) => "ResourceNotFound",
            AlreadyRedirected(..) | RedirectTarget(_) | RedirectSource(_) | RedirectToSelf(_) => "InvalidParameter",
            RedirectNotFound { .. } => "InvalidParameter.LocationNotFound",
            RedirectCode(_) => "InvalidParameterValue",
            TargetQuota { .. } => "LimitExceeded",
            TargetExists { .. } => "InvalidParameter.RegisterTargetsDuplicate",
            TargetNotFound { .. } => "InvalidParameter",
            CertificateNotFound(_) => "InvalidParameter.CertificateNotFound",
            CertificateKind { .. } => "InvalidParameterValue",
            CertificateInUse { .. } => "FailedOperation.CertificateInUse",
            CertificateMissing(_) => "MissingParameter",
            CaMissing => "InvalidParameter",
            RuleUnnamed => "MissingParameter",
            TlsNotApplicable(..) => "InvalidParameter",
            ConfigNotFound(_) => "ResourceNotFound",
            ConfigInUse { .. } => "FailedOperation.ResourceInUse",
            ConfigPlace { .. } | ConfigNotBound { .. } => "InvalidParameter",
        };
        ApiError::new(code, sentence(&e.to_string()))
    }
}

/// Internal messages are lower-case phrases; API messages are sentences.
pub fn sentence(phrase: &str) -> String {
    let mut chars = phrase.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}
