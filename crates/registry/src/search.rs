//! The search language: metric conditions, ordering and page tokens.

use mlops_core::ApiError;
use mlops_core::ids::validate_name;
use serde::{Deserialize, Serialize};

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

/// Where a page ended: the sort key, model and version of its last row. The next page starts
/// strictly after it, so pages neither skip nor repeat rows when versions are added meanwhile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The `order_by` it was issued for.
    pub order: String,
    pub key: f64,
    pub model: String,
    pub version: u32,
}

impl Order {
    pub fn canonical(&self) -> String {
        match self {
            Order::Created => "created".into(),
            Order::Metric { name, descending } => {
                format!("{name} {}", if *descending { "desc" } else { "asc" })
            }
        }
    }
}

/// Page tokens are opaque to clients; this server reads back only what it issued.
pub fn page_token(cursor: &Cursor) -> String {
    format!(
        "k{}",
        hex::encode(serde_json::to_vec(cursor).expect("a cursor serializes"))
    )
}

pub fn parse_page_token(token: &str, order: &Order) -> Result<Option<Cursor>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let cursor: Cursor = token
        .strip_prefix('k')
        .and_then(|h| hex::decode(h).ok())
        .and_then(|json| serde_json::from_slice(&json).ok())
        .filter(|c: &Cursor| c.key.is_finite())
        .ok_or_else(|| ApiError::invalid_argument("page_token is not one this server issued"))?;
    if cursor.order != order.canonical() {
        return Err(ApiError::invalid_argument(format!(
            "page_token was issued for order_by {:?}, not {:?}",
            cursor.order,
            order.canonical()
        )));
    }
    Ok(Some(cursor))
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
        let order = parse_order("r2 desc").unwrap();
        let cursor = Cursor {
            order: order.canonical(),
            key: 0.5,
            model: "m".into(),
            version: 3,
        };
        assert_eq!(
            parse_page_token(&page_token(&cursor), &order).unwrap(),
            Some(cursor.clone())
        );
        assert!(
            parse_page_token(&page_token(&cursor), &Order::Created)
                .unwrap_err()
                .message
                .contains("order_by")
        );
        assert!(parse_page_token("120", &order).is_err());
        assert!(parse_page_token("k00", &order).is_err());
    }
}
