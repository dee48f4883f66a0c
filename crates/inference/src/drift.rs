//! Drift of live inputs: each loaded bundle that carries a training profile keeps a window of
//! its most recent input values per feature; drift against the profile is computed on demand
//! (the `ModelDrift` RPC, which the orchestrator can poll) and every `interval_seconds` for
//! Prometheus.

use std::collections::VecDeque;
use std::sync::Mutex;

use mlops_ml::ModelBundle;
use mlops_ml::drift::{FeatureDrift, feature_drift};
use mlops_ml::frame::{ColumnKind, Frame, Values};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftSettings {
    /// Most recent values kept per input of each model version; 0 turns monitoring off.
    /// Up to 1,000 the statistical tests decide, beyond that the distances (Evidently's rule).
    pub window: usize,
    /// How often the drift gauges are recomputed, in seconds.
    pub interval_seconds: u64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        Self {
            window: 5000,
            interval_seconds: 15,
        }
    }
}

enum Window {
    Numeric(VecDeque<f64>),
    Categorical(VecDeque<Option<String>>),
}

/// The live windows of one model version.
pub struct Monitor {
    capacity: usize,
    windows: Mutex<Vec<Window>>,
}

fn push<T>(window: &mut VecDeque<T>, capacity: usize, values: impl Iterator<Item = T>) {
    for value in values {
        if window.len() == capacity {
            window.pop_front();
        }
        window.push_back(value);
    }
}

impl Monitor {
    /// A monitor for a bundle with a profile, unless monitoring is off.
    pub fn new(bundle: &ModelBundle, settings: &DriftSettings) -> Option<Self> {
        bundle.profile.as_ref()?;
        if settings.window == 0 {
            return None;
        }
        let windows = bundle
            .inputs
            .iter()
            .map(|i| match i.kind {
                ColumnKind::Numeric => Window::Numeric(VecDeque::new()),
                ColumnKind::Categorical => Window::Categorical(VecDeque::new()),
            })
            .collect();
        Some(Self {
            capacity: settings.window,
            windows: Mutex::new(windows),
        })
    }

    /// Rows of numeric inputs in the bundle's input order (the last `window` rows at most).
    pub fn record_matrix(&self, x: &Array2<f64>) {
        let skip = x.nrows().saturating_sub(self.capacity);
        let mut windows = self.windows.lock().expect("drift windows");
        for (j, window) in windows.iter_mut().enumerate() {
            if let Window::Numeric(w) = window
                && j < x.ncols()
            {
                push(w, self.capacity, x.column(j).iter().skip(skip).copied());
            }
        }
    }

    /// Named input columns (the categorical path).
    pub fn record_frame(&self, bundle: &ModelBundle, frame: &Frame) {
        let skip = frame.rows().saturating_sub(self.capacity);
        let mut windows = self.windows.lock().expect("drift windows");
        for (input, window) in bundle.inputs.iter().zip(windows.iter_mut()) {
            match (frame.column(&input.name).map(|c| &c.values), window) {
                (Some(Values::Numeric(v)), Window::Numeric(w)) => {
                    push(w, self.capacity, v.iter().skip(skip).copied())
                }
                (Some(Values::Categorical(v)), Window::Categorical(w)) => {
                    push(w, self.capacity, v.iter().skip(skip).cloned())
                }
                _ => {}
            }
        }
    }

    /// Drift of every input with live values, in input order.
    pub fn report(&self, bundle: &ModelBundle) -> Vec<FeatureDrift> {
        let Some(profile) = bundle.profile.as_ref() else {
            return Vec::new();
        };
        // Copy the windows out so the lock is not held while computing.
        let snapshot: Vec<Values> = self
            .windows
            .lock()
            .expect("drift windows")
            .iter()
            .map(|w| match w {
                Window::Numeric(v) => Values::Numeric(v.iter().copied().collect()),
                Window::Categorical(v) => Values::Categorical(v.iter().cloned().collect()),
            })
            .collect();
        bundle
            .inputs
            .iter()
            .zip(snapshot)
            .filter_map(|(input, live)| {
                feature_drift(&input.name, profile.feature(&input.name)?, &live)
            })
            .collect()
    }
}
