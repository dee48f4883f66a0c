//! Who is calling, with which role and which resources.

use crate::ApiError;
use crate::auth::policy::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Viewer,
    DataScientist,
    Deployer,
    Admin,
    /// The services themselves, calling each other.
    Service,
}

impl Role {
    pub const ASSIGNABLE: [Role; 4] = [
        Role::Viewer,
        Role::DataScientist,
        Role::Deployer,
        Role::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::DataScientist => "data_scientist",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    /// Only the roles a token may be given; `service` is reserved for the service token.
    pub fn parse(name: &str) -> Result<Role, ApiError> {
        Self::ASSIGNABLE
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| {
                ApiError::invalid_argument(format!(
                    "role {name:?} is not one of viewer, data_scientist, deployer, admin"
                ))
            })
    }

    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::Viewer => matches!(action, Read | Predict),
            Role::DataScientist => matches!(
                action,
                Read | Predict | WriteData | Train | RegisterModel | RunPipeline
            ),
            Role::Deployer => matches!(action, Read | Predict | Deploy),
            Role::Service => !matches!(action, ManageAuth | ReadAudit | DeleteData | DeleteModel),
        }
    }

    pub fn actions(self) -> Vec<Action> {
        Action::ALL
            .into_iter()
            .filter(|a| self.allows(*a))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Dataset,
    Model,
    Pipeline,
}

impl ResourceKind {
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Dataset => "dataset",
            ResourceKind::Model => "model",
            ResourceKind::Pipeline => "pipeline",
        }
    }
}

/// One grant: a resource kind and a name pattern (exact, or a prefix ending in `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub kind: ResourceKind,
    pub pattern: String,
}

impl Grant {
    pub fn parse(text: &str) -> Result<Grant, ApiError> {
        let invalid = || {
            ApiError::invalid_argument(format!(
                "resource grant {text:?} must be kind:pattern with kind dataset, model or pipeline"
            ))
        };
        let (kind, pattern) = text.split_once(':').ok_or_else(invalid)?;
        let kind = match kind {
            "dataset" => ResourceKind::Dataset,
            "model" => ResourceKind::Model,
            "pipeline" => ResourceKind::Pipeline,
            _ => return Err(invalid()),
        };
        let stem = pattern.strip_suffix('*').unwrap_or(pattern);
        if !stem.is_empty() {
            crate::ids::validate_name("resource grant", stem)?;
        } else if pattern != "*" {
            return Err(invalid());
        }
        Ok(Grant {
            kind,
            pattern: pattern.to_string(),
        })
    }

    pub fn matches(&self, kind: ResourceKind, name: &str) -> bool {
        self.kind == kind
            && match self.pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => self.pattern == name,
            }
    }

    pub fn text(&self) -> String {
        format!("{}:{}", self.kind.name(), self.pattern)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token name, JWT subject, or "service".
    pub subject: String,
    pub role: Role,
    /// Empty: every resource the role allows.
    pub grants: Vec<Grant>,
}

impl Principal {
    /// Everything allowed: auth disabled (the zero-setup default).
    pub fn anonymous_admin() -> Self {
        Self {
            subject: "anonymous".into(),
            role: Role::Admin,
            grants: Vec::new(),
        }
    }

    pub fn can_see(&self, kind: ResourceKind, name: &str) -> bool {
        // No grants: the role's reach. Grants: only what they name.
        self.grants.is_empty() || self.grants.iter().any(|g| g.matches(kind, name))
    }

    pub fn require(&self, action: Action) -> Result<(), ApiError> {
        if self.role.allows(action) {
            Ok(())
        } else {
            Err(ApiError::new(
                crate::ErrorKind::PermissionDenied,
                format!("role {} may not {}", self.role.name(), action.name()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_least_privilege() {
        assert!(Role::Viewer.allows(Action::Read) && !Role::Viewer.allows(Action::Deploy));
        assert!(
            !Role::Deployer.allows(Action::DeleteData) && Role::Deployer.allows(Action::Deploy)
        );
        assert!(!Role::DataScientist.allows(Action::Deploy));
        assert!(!Role::Service.allows(Action::ManageAuth));
        assert!(Role::Admin.allows(Action::ManageAuth));
        assert!(Role::parse("service").is_err());
    }

    #[test]
    fn grants_narrow_by_kind_and_pattern() {
        let p = Principal {
            subject: "t".into(),
            role: Role::DataScientist,
            grants: vec![
                Grant::parse("model:churn-*").unwrap(),
                Grant::parse("dataset:churn").unwrap(),
            ],
        };
        assert!(p.can_see(ResourceKind::Model, "churn-v2"));
        assert!(!p.can_see(ResourceKind::Model, "fraud"));
        assert!(p.can_see(ResourceKind::Dataset, "churn"));
        assert!(!p.can_see(ResourceKind::Dataset, "churn2"));
        // A token with grants sees no resource of a kind it has no grant for.
        assert!(!p.can_see(ResourceKind::Pipeline, "anything"));
        assert!(Principal::anonymous_admin().can_see(ResourceKind::Pipeline, "x"));
        for bad in ["model", "user:x", "model:../x", "model:", "model:a/b*"] {
            assert!(Grant::parse(bad).is_err(), "{bad}");
        }
    }
}
