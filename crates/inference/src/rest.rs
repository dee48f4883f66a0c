//! The Open Inference Protocol over HTTP/JSON (`/v2/...`), same semantics as gRPC.

use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mlops_core::auth::Principal;
use mlops_core::{ApiError, ErrorKind};
use mlops_proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use mlops_proto::inference::{InferParameter, InferTensorContents, ModelInferRequest};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::grpc::server_metadata;
use crate::models::Models;

pub fn router(models: Models, max_request_bytes: usize) -> Router {
    Router::new()
        .route(
            "/v2/health/live",
            get(|| async { Json(json!({"live": true})) }),
        )
        .route(
            "/v2/health/ready",
            get(|| async { Json(json!({"ready": true})) }),
        )
        .route(
            "/v2",
            get(|| async {
                Json(serde_json::to_value(ServerMetadataJson::default()).unwrap_or_default())
            }),
        )
        .route("/v2/models/{name}", get(metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(metadata_version),
        )
        .route("/v2/models/{name}/ready", get(ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(ready_version),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer_version),
        )
        .route(
            "/metrics",
            get(|| async { mlops_core::telemetry::prometheus().render() }),
        )
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(models)
}

#[derive(serde::Serialize)]
struct ServerMetadataJson {
    name: String,
    version: String,
    extensions: Vec<String>,
}

impl Default for ServerMetadataJson {
    fn default() -> Self {
        let m = server_metadata();
        Self {
            name: m.name,
            version: m.version,
            extensions: m.extensions,
        }
    }
}

struct HttpError(ApiError);

impl From<ApiError> for HttpError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match self.0.kind {
            ErrorKind::InvalidArgument | ErrorKind::FailedPrecondition => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::AlreadyExists => StatusCode::CONFLICT,
            ErrorKind::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Aborted => StatusCode::CONFLICT,
            ErrorKind::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = if self.0.kind == ErrorKind::Internal {
            tracing::error!(error = %self.0.message, "internal error");
            "internal error; see the server log".to_string()
        } else {
            self.0.message
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

type HttpResult = Result<Json<Value>, HttpError>;

async fn metadata(
    State(models): State<Models>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
) -> HttpResult {
    metadata_of(&models, &caller, &name, "").await
}

async fn metadata_version(
    State(models): State<Models>,
    Extension(caller): Extension<Principal>,
    Path((name, version)): Path<(String, String)>,
) -> HttpResult {
    metadata_of(&models, &caller, &name, &version).await
}

async fn metadata_of(models: &Models, caller: &Principal, name: &str, version: &str) -> HttpResult {
    let m = models.metadata(Some(caller), name, version).await?;
    let tensors =
        |ts: &[mlops_proto::inference::model_metadata_response::TensorMetadata]| -> Vec<Value> {
            ts.iter()
                .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
                .collect()
        };
    Ok(Json(json!({
        "name": m.name, "versions": m.versions, "platform": m.platform,
        "inputs": tensors(&m.inputs), "outputs": tensors(&m.outputs),
    })))
}

async fn ready(
    State(models): State<Models>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
) -> HttpResult {
    models.resolve(Some(&caller), &name, "").await?;
    Ok(Json(json!({"name": name, "ready": true})))
}

async fn ready_version(
    State(models): State<Models>,
    Extension(caller): Extension<Principal>,
    Path((name, version)): Path<(String, String)>,
) -> HttpResult {
    models.resolve(Some(&caller), &name, &version).await?;
    Ok(Json(json!({"name": name, "ready": true})))
}

#[derive(Deserialize)]
struct InferBody {
    id: Option<String>,
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Vec<OutputJson>,
}

#[derive(Deserialize)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

#[derive(Deserialize)]
struct OutputJson {
    name: String,
}

async fn infer(
    State(models): State<Models>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> HttpResult {
    infer_json(&models, &caller, name, String::new(), &body).await
}

async fn infer_version(
    State(models): State<Models>,
    Extension(caller): Extension<Principal>,
    Path((name, version)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> HttpResult {
    infer_json(&models, &caller, name, version, &body).await
}

/// Flattens `data` (flat or nested, as the REST spec allows) into numbers.
fn flatten(tensor: &str, value: &Value, out: &mut Vec<f64>) -> Result<(), ApiError> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| flatten(tensor, v, out)),
        Value::Number(n) => {
            out.push(n.as_f64().ok_or_else(|| {
                ApiError::invalid_argument(format!("input tensor {tensor:?}: {n} is not a number"))
            })?);
            Ok(())
        }
        Value::Bool(b) => {
            out.push(f64::from(*b));
            Ok(())
        }
        other => Err(ApiError::invalid_argument(format!(
            "input tensor {tensor:?}: data must hold numbers, found {other}"
        ))),
    }
}

async fn infer_json(
    models: &Models,
    caller: &Principal,
    model_name: String,
    model_version: String,
    body: &[u8],
) -> HttpResult {
    let body: InferBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_argument(format!("invalid inference request body: {e}")))?;
    let mut inputs = Vec::with_capacity(body.inputs.len());
    for input in body.inputs {
        let mut values = Vec::new();
        flatten(&input.name, &input.data, &mut values)?;
        // Each datatype in the field the protocol gives it; integers must be whole numbers.
        let whole = |v: &f64| {
            (v.fract() == 0.0).then_some(*v).ok_or_else(|| {
                ApiError::invalid_argument(format!(
                    "input tensor {:?}: {v} is not a whole number for {}",
                    input.name, input.datatype
                ))
            })
        };
        let contents = match input.datatype.as_str() {
            "FP32" => InferTensorContents {
                fp32_contents: values.iter().map(|v| *v as f32).collect(),
                ..Default::default()
            },
            "INT64" => InferTensorContents {
                int64_contents: values
                    .iter()
                    .map(|v| whole(v).map(|v| v as i64))
                    .collect::<Result<_, _>>()?,
                ..Default::default()
            },
            "INT32" => InferTensorContents {
                int_contents: values
                    .iter()
                    .map(|v| whole(v).map(|v| v as i32))
                    .collect::<Result<_, _>>()?,
                ..Default::default()
            },
            "BOOL" => InferTensorContents {
                bool_contents: values.iter().map(|v| *v != 0.0).collect(),
                ..Default::default()
            },
            _ => InferTensorContents {
                fp64_contents: values,
                ..Default::default()
            },
        };
        inputs.push(InferInputTensor {
            name: input.name,
            datatype: input.datatype,
            shape: input.shape,
            contents: Some(contents),
            ..Default::default()
        });
    }
    let request = ModelInferRequest {
        model_name,
        model_version,
        id: body.id.unwrap_or_default(),
        parameters: body
            .parameters
            .into_iter()
            .map(|(key, value)| Ok((key.clone(), json_parameter(&key, value)?)))
            .collect::<Result<_, ApiError>>()?,
        inputs,
        outputs: body
            .outputs
            .into_iter()
            .map(|o| InferRequestedOutputTensor {
                name: o.name,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let response = models.infer(Some(caller), request).await?;
    let outputs: Vec<Value> = response
        .outputs
        .iter()
        .zip(&response.raw_output_contents)
        .map(|(tensor, raw)| {
            let data = crate::tensor::raw_to_json(&tensor.datatype, raw);
            json!({"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape, "data": data})
        })
        .collect();
    Ok(Json(json!({
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "outputs": outputs,
    })))
}

/// A REST `parameters` value as the protocol's typed parameter.
fn json_parameter(key: &str, value: Value) -> Result<InferParameter, ApiError> {
    use mlops_proto::inference::infer_parameter::ParameterChoice;
    let choice = match value {
        Value::Bool(b) => ParameterChoice::BoolParam(b),
        Value::String(s) => ParameterChoice::StringParam(s),
        Value::Number(n) if n.is_i64() => {
            ParameterChoice::Int64Param(n.as_i64().unwrap_or_default())
        }
        Value::Number(n) => ParameterChoice::DoubleParam(n.as_f64().unwrap_or_default()),
        other => {
            return Err(ApiError::invalid_argument(format!(
                "parameter {key:?}: {other} is not a boolean, number or string"
            )));
        }
    };
    Ok(InferParameter {
        parameter_choice: Some(choice),
    })
}
