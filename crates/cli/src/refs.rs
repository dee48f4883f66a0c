//! Parsing the references users type: `dataset[@version|@alias]`, `model[:version|@alias]`.

use anyhow::{Context, bail};
use mlops_proto::v1::GetDatasetVersionRequest;

/// `name` (the latest version), `name@3` or `name@prod` (an alias) as a version request.
pub fn dataset_ref(text: &str) -> anyhow::Result<GetDatasetVersionRequest> {
    mlops_core::ids::dataset_ref("dataset", text).map_err(|e| anyhow::anyhow!(e.message))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Version(u32),
    Alias(String),
}

impl Selector {
    /// As the registry's `(version, alias)` request fields: 0 and "" mean not given.
    pub fn version_and_alias(self) -> (u32, String) {
        match self {
            Selector::Latest => (0, String::new()),
            Selector::Version(v) => (v, String::new()),
            Selector::Alias(a) => (0, a),
        }
    }
}

/// `model`, `model:3` or `model@champion`.
pub fn model_ref(text: &str) -> anyhow::Result<(String, Selector)> {
    if let Some((name, version)) = text.split_once(':') {
        let version: u32 = version
            .parse()
            .with_context(|| format!("model version {version:?} in {text:?} is not a number"))?;
        if version == 0 {
            bail!("model versions start at 1");
        }
        return Ok((name.to_string(), Selector::Version(version)));
    }
    if let Some((name, alias)) = text.split_once('@') {
        return Ok((name.to_string(), Selector::Alias(alias.to_string())));
    }
    Ok((text.to_string(), Selector::Latest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!(dataset_ref("d").unwrap().version, 0);
        assert_eq!(dataset_ref("d@3").unwrap().version, 3);
        assert_eq!(dataset_ref("d@prod").unwrap().alias, "prod");
        assert!(dataset_ref("d@0").is_err() && dataset_ref("@1").is_err());
        assert_eq!(model_ref("m").unwrap(), ("m".into(), Selector::Latest));
        assert_eq!(
            model_ref("m:2").unwrap(),
            ("m".into(), Selector::Version(2))
        );
        assert_eq!(
            model_ref("m@champion").unwrap(),
            ("m".into(), Selector::Alias("champion".into()))
        );
        assert!(model_ref("m:0").is_err());
        assert!(model_ref("m:two").is_err());
    }
}
