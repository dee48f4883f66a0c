//! Parsing the references users type: `dataset[@version]`, `model[:version|@alias]`.

use anyhow::{Context, bail};

/// `name` or `name@version`.
pub fn dataset_ref(text: &str) -> anyhow::Result<(String, u32)> {
    match text.split_once('@') {
        None => Ok((text.to_string(), 0)),
        Some((name, version)) => Ok((
            name.to_string(),
            version.parse().with_context(|| {
                format!("dataset version {version:?} in {text:?} is not a number")
            })?,
        )),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Version(u32),
    Alias(String),
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
        assert_eq!(dataset_ref("d").unwrap(), ("d".into(), 0));
        assert_eq!(dataset_ref("d@3").unwrap(), ("d".into(), 3));
        assert!(dataset_ref("d@x").is_err());
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
