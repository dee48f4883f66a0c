//! The search language: metric conditions, ordering and page tokens.

use mlops_core::ApiError;
use mlops_core::ids::validate_name;

#[derive(Debug, Clone, PartialEq)]
pub struct MetricFilter {
    pub metric: String,
    /// One of `<`, `<=`, `>`, `>=`, `=`: safe to put into SQL as is.
    pub op: &'static str,
    pub value: f64,
}

/// `"rmse < 50"` and friends.
pub fn parse_filter(text: &str) -> Result<MetricFilter, ApiError> {
    let invalid = |why: &str| {
        ApiError::invalid_argument(format!(
            "metric_filters {text:?}: {why} (expected e.g. \"rmse < 50\")"
        ))
    };
    // Two-character operators first, so "<=" is not read as "<".
    let (index, op) = ["<=", ">=", "<", ">", "="]
        .iter()
        .find_map(|op| text.find(op).map(|i| (i, *op)))
        .ok_or_else(|| invalid("no comparison operator"))?;
    let metric = text[..index].trim();
    validate_name("metric_filters metric", metric)?;
    let value: f64 = text[index + op.len()..]
        .trim()
        .parse()
        .map_err(|_| invalid("the right side is not a number"))?;
    if !value.is_finite() {
        return Err(invalid("the right side must be finite"));
    }
    Ok(MetricFilter {
        metric: metric.to_string(),
        op,
        value,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub enum Order {
    /// Newest first.
    Created,
    Metric {
        name: String,
        descending: bool,
    },
}

/// `""`/`"created"`, or `"<metric> [asc|desc]"`.
pub fn parse_order(text: &str) -> Result<Order, ApiError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [] | ["created"] => Ok(Order::Created),
        [metric] | [metric, "asc"] => {
            validate_name("order_by metric", metric)?;
            Ok(Order::Metric {
                name: metric.to_string(),
                descending: false,
            })
        }
        [metric, "desc"] => {
            validate_name("order_by metric", metric)?;
            Ok(Order::Metric {
                name: metric.to_string(),
                descending: true,
            })
        }
        _ => Err(ApiError::invalid_argument(format!(
            "order_by {text:?}: use \"created\" or \"<metric> asc|desc\""
        ))),
    }
}

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Page tokens are opaque to clients; this server reads back only what it issued.
pub fn page_token(offset: u64) -> String {
    format!("o{offset}")
}

pub fn parse_page_token(token: &str) -> Result<u64, ApiError> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix('o')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::invalid_argument("page_token is not one this server issued"))
}

/// A JSON path for a metric; names are validated, so they hold no quote.
pub fn metric_path(metric: &str) -> String {
    format!("$.\"{metric}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters_orders_and_tokens() {
        assert_eq!(
            parse_filter("rmse < 50").unwrap(),
            MetricFilter {
                metric: "rmse".into(),
                op: "<",
                value: 50.0
            }
        );
        assert_eq!(parse_filter("r2>=0.5").unwrap().op, ">=");
        for bad in [
            "rmse ~ 5",
            "< 5",
            "rmse < x",
            "rmse < inf",
            "a\"b < 1",
            "../x < 1",
        ] {
            let error = parse_filter(bad).unwrap_err();
            assert!(
                error.message.contains("metric_filters"),
                "{bad}: {}",
                error.message
            );
        }
        assert_eq!(parse_order("").unwrap(), Order::Created);
        assert_eq!(
            parse_order("r2 desc").unwrap(),
            Order::Metric {
                name: "r2".into(),
                descending: true
            }
        );
        assert!(parse_order("r2 sideways").is_err());
        assert_eq!(parse_page_token(&page_token(120)).unwrap(), 120);
        assert!(parse_page_token("120").is_err());
    }
}
