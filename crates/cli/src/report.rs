//! A pipeline run as one SVG page: the graph of steps with their states, every candidate's
//! held-out metrics next to the champion's, and the selected job's loss curve.

use std::collections::{BTreeSet, HashMap};

use mlops_proto::v1::{JobState, PipelineRun, StepState};

/// Each step's level: one after the deepest step it needs, so steps on one level can run at
/// the same time.
pub fn step_levels(steps: &[StepState]) -> Vec<usize> {
    // Runs recorded before steps had needs ran as a chain.
    if steps
        .iter()
        .all(|s| s.needs.is_empty() && s.kind.is_empty())
    {
        return (0..steps.len()).collect();
    }
    let mut level = vec![0usize; steps.len()];
    // Needs point backwards in a DAG; as many passes as steps settle any order.
    for _ in 0..steps.len() {
        for (i, step) in steps.iter().enumerate() {
            level[i] = step
                .needs
                .iter()
                .filter_map(|n| steps.iter().position(|s| &s.name == n))
                .map(|j| level[j] + 1)
                .max()
                .unwrap_or(0);
        }
    }
    level
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn state_colour(state: JobState) -> (&'static str, &'static str) {
    match state {
        JobState::Succeeded => ("#e3f4e1", "#2e7d32"),
        JobState::Failed => ("#fde2e1", "#c62828"),
        JobState::Running => ("#e1ecfd", "#1565c0"),
        _ => ("#f1f1f1", "#8a8a8a"),
    }
}

const SERIES_COLOURS: [&str; 6] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22",
];
const CHAMPION_COLOUR: &str = "#ff7f0e";

/// The report. `champion` is the version the run's model was trained to replace (label and
/// metrics); `loss_curve` the selected job's per-epoch loss (empty for closed-form fits).
pub fn run_svg(
    run: &PipelineRun,
    champion: Option<(&str, &HashMap<String, f64>)>,
    loss_curve: &[f64],
) -> String {
    let levels = step_levels(&run.steps);
    let (box_w, box_h, col, row) = (130.0, 34.0, 160.0, 48.0);
    let depth = levels.iter().copied().max().unwrap_or(0);
    let width = f64::max(960.0, 40.0 + depth as f64 * col + box_w);
    let mut body = String::new();
    let mut y = 30.0;
    let state = JobState::try_from(run.state).unwrap_or_default();
    body += &format!(
        "<text x=\"20\" y=\"{y}\" font-size=\"18\" font-weight=\"bold\">run {} ({}): {}</text>\n",
        escape(&run.id),
        escape(&run.pipeline),
        state.as_str_name()
    );
    y += 20.0;
    let mut facts = Vec::new();
    if !run.trigger.is_empty() {
        facts.push(format!("started by {}", run.trigger));
    }
    if run.dataset_version > 0 {
        facts.push(format!("dataset {}@{}", run.dataset, run.dataset_version));
    }
    if !run.evaluated_on.is_empty() {
        facts.push(format!("gated on {}", run.evaluated_on));
    }
    if run.model_version > 0 {
        facts.push(format!(
            "model {}:{}{}",
            run.model_name,
            run.model_version,
            if run.promoted { " (promoted)" } else { "" }
        ));
    }
    facts.push(format!("pipeline sha256 {}", &run.pipeline_digest));
    body += &format!(
        "<text x=\"20\" y=\"{y}\" fill=\"#555\">{}</text>\n",
        escape(&facts.join(" · "))
    );
    if !run.error.is_empty() {
        y += 18.0;
        body += &format!(
            "<text x=\"20\" y=\"{y}\" fill=\"#c62828\">{}</text>\n",
            escape(&run.error)
        );
    }

    // The graph, by levels.
    y += 30.0;
    let mut rows_used: HashMap<usize, usize> = HashMap::new();
    let positions: Vec<(f64, f64)> = levels
        .iter()
        .map(|&level| {
            let row_index = rows_used.entry(level).or_default();
            let at = (20.0 + level as f64 * col, y + *row_index as f64 * row);
            *row_index += 1;
            at
        })
        .collect();
    let graph_rows = rows_used.values().copied().max().unwrap_or(1);
    body += "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
             markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" \
             fill=\"#777\"/></marker></defs>\n";
    for (i, step) in run.steps.iter().enumerate() {
        for need in &step.needs {
            if let Some(j) = run.steps.iter().position(|s| &s.name == need) {
                let (x1, y1) = (positions[j].0 + box_w, positions[j].1 + box_h / 2.0);
                let (x2, y2) = (positions[i].0, positions[i].1 + box_h / 2.0);
                let mid = (x1 + x2) / 2.0;
                body += &format!(
                    "<path d=\"M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}\" \
                     fill=\"none\" stroke=\"#777\" marker-end=\"url(#arrow)\"/>\n"
                );
            }
        }
    }
    for (step, (x, top)) in run.steps.iter().zip(&positions) {
        let (fill, stroke) = state_colour(JobState::try_from(step.state).unwrap_or_default());
        body += &format!(
            "<g><title>{}</title><rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{box_w}\" \
             height=\"{box_h}\" rx=\"6\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{stroke}\">{} · {}</text></g>\n",
            escape(&step.message),
            x + box_w / 2.0,
            top + 15.0,
            escape(&step.name),
            x + box_w / 2.0,
            top + 28.0,
            escape(&step.kind),
            JobState::try_from(step.state)
                .unwrap_or_default()
                .as_str_name()
                .to_lowercase(),
        );
    }
    y += graph_rows as f64 * row + 20.0;

    // Metrics: each train candidate, and the champion, per metric scaled to the group's largest.
    // Train steps keep their holdout metrics; on an evaluation dataset only the selected
    // candidate's were measured on the champion's rows.
    let on_holdout = matches!(run.evaluated_on.as_str(), "" | "holdout");
    let mut series: Vec<(String, &HashMap<String, f64>, &str)> = run
        .steps
        .iter()
        .filter(|s| on_holdout && s.kind == "train" && !s.metrics.is_empty())
        .enumerate()
        .map(|(k, s)| {
            let selected = s.training_job_id == run.training_job_id;
            let label = if selected {
                format!("{} (selected)", s.name)
            } else {
                s.name.clone()
            };
            (label, &s.metrics, SERIES_COLOURS[k % SERIES_COLOURS.len()])
        })
        .collect();
    if series.is_empty() && !run.metrics.is_empty() {
        series.push(("selected candidate".into(), &run.metrics, SERIES_COLOURS[0]));
    }
    if let Some((label, metrics)) = champion {
        series.push((label.to_string(), metrics, CHAMPION_COLOUR));
    }
    let names: BTreeSet<&String> = series.iter().flat_map(|(_, m, _)| m.keys()).collect();
    if !names.is_empty() {
        body += &format!(
            "<text x=\"20\" y=\"{y}\" font-size=\"15\" font-weight=\"bold\">metrics on {}</text>\n",
            escape(if on_holdout {
                "each one's holdout"
            } else {
                &run.evaluated_on
            })
        );
        let mut legend_x = 200.0;
        for (label, _, colour) in &series {
            body += &format!(
                "<rect x=\"{legend_x}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{y}\">{}</text>\n",
                y - 11.0,
                legend_x + 16.0,
                escape(label)
            );
            legend_x += 24.0 + 7.5 * label.len() as f64;
        }
        y += 16.0;
        let bar_h = 14.0;
        let (label_w, bar_max) = (150.0, 560.0);
        for name in names {
            let values: Vec<Option<f64>> = series
                .iter()
                .map(|(_, m, _)| m.get(name).copied().filter(|v| v.is_finite()))
                .collect();
            let largest = values
                .iter()
                .flatten()
                .fold(0.0f64, |a, v| a.max(v.abs()))
                .max(f64::MIN_POSITIVE);
            body += &format!(
                "<text x=\"20\" y=\"{:.1}\" font-weight=\"bold\">{}</text>\n",
                y + bar_h,
                escape(name)
            );
            for ((_, _, colour), value) in series.iter().zip(&values) {
                let Some(value) = value else {
                    y += bar_h + 3.0;
                    continue;
                };
                let length = bar_max * value.abs() / largest;
                body += &format!(
                    "<rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{length:.1}\" height=\"{bar_h}\" \
                     fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{value:.4}</text>\n",
                    label_w + length + 6.0,
                    y + bar_h - 3.0
                );
                y += bar_h + 3.0;
            }
            y += 8.0;
        }
    }

    // The selected job's loss curve.
    y += 10.0;
    let loss_height = 360.0;
    if loss_curve.is_empty() {
        body += &format!(
            "<text x=\"20\" y=\"{y}\" fill=\"#555\">no loss curve: the selected model is fitted \
             in closed form</text>\n"
        );
        y += 20.0;
    } else {
        body += &format!(
            "<g transform=\"translate(20,{y:.1})\">\n{}</g>\n",
            crate::plot::loss_svg("loss of the selected candidate", loss_curve)
        );
        y += loss_height + 10.0;
    }
    let height = y + 10.0;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, kind: &str, needs: &[&str], state: JobState) -> StepState {
        StepState {
            name: name.into(),
            kind: kind.into(),
            needs: needs.iter().map(|n| n.to_string()).collect(),
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn levels_put_independent_steps_side_by_side() {
        let steps = vec![
            step("data", "ingest", &[], JobState::Succeeded),
            step("a", "train", &["data"], JobState::Succeeded),
            step("b", "train", &["data"], JobState::Succeeded),
            step("gate", "evaluate", &["a", "b"], JobState::Failed),
            step("register", "register", &["gate"], JobState::Skipped),
        ];
        assert_eq!(step_levels(&steps), [0, 1, 1, 2, 3]);
    }

    #[test]
    fn the_report_draws_the_graph_the_metrics_and_the_loss() {
        let mut a = step("a", "train", &["data"], JobState::Succeeded);
        a.training_job_id = "j1".into();
        a.metrics = [("r2".to_string(), 0.5), ("rmse".to_string(), 50.0)].into();
        let mut b = step("b", "train", &["data"], JobState::Succeeded);
        b.training_job_id = "j2".into();
        b.metrics = [("r2".to_string(), 0.4), ("rmse".to_string(), 55.0)].into();
        let run = PipelineRun {
            id: "r1".into(),
            pipeline: "p<&>".into(),
            state: JobState::Succeeded as i32,
            training_job_id: "j1".into(),
            steps: vec![
                step("data", "ingest", &[], JobState::Succeeded),
                a,
                b,
                step("gate", "evaluate", &["a", "b"], JobState::Succeeded),
            ],
            ..Default::default()
        };
        let champion: HashMap<String, f64> =
            [("r2".to_string(), 0.45), ("rmse".to_string(), 52.0)].into();
        let svg = run_svg(&run, Some(("champion v1", &champion)), &[3.0, 2.0, 1.5]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("p&lt;&amp;&gt;"), "text is escaped");
        // Four boxes, four edges, a legend of three series, two metric groups of three bars.
        assert_eq!(svg.matches("rx=\"6\"").count(), 4);
        assert_eq!(svg.matches("marker-end").count(), 4);
        assert!(svg.contains("a (selected)") && svg.contains("champion v1"));
        assert_eq!(svg.matches("font-size=\"11\">").count(), 6);
        assert!(svg.contains("0.4500") && svg.contains("55.0000"));
        assert!(svg.contains("<polyline"), "the loss curve");
        let closed_form = run_svg(&run, None, &[]);
        assert!(closed_form.contains("no loss curve"));
        assert!(!closed_form.contains("champion"));
        // Every opened element is closed.
        for tag in ["svg", "g", "text", "defs", "marker"] {
            let opened = closed_form.matches(&format!("<{tag}")).count()
                - closed_form.matches(&format!("<{tag}/")).count();
            assert_eq!(
                opened,
                closed_form.matches(&format!("</{tag}>")).count(),
                "{tag}"
            );
        }
    }
}
