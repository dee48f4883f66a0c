//! Names the orchestrator and the inference service agree on for canary releases.

/// While a model has this alias, a share of the requests that name no version goes to the
/// alias's version instead of the default alias's.
pub const CANARY_ALIAS: &str = "canary";

/// The tag of the canary version that sets that share (0 < share <= 1).
pub const CANARY_SHARE_TAG: &str = "canary_share";

/// The share without the tag.
pub const DEFAULT_CANARY_SHARE: f64 = 0.1;
