//! Loss curves for the terminal (a sparkline) and for files (a small SVG line chart).

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Values spanning more than two orders of magnitude are drawn on a log scale, where a
/// decaying loss stays readable.
fn scaled(values: &[f64]) -> (Vec<f64>, bool) {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let log = lo > 0.0 && hi / lo > 100.0;
    let out = values
        .iter()
        .map(|&v| if log { v.log10() } else { v })
        .collect();
    (out, log)
}

/// At most `width` characters: each the mean of its share of the values.
pub fn sparkline(values: &[f64], width: usize) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let (values, _) = scaled(values);
    let buckets = values.len().min(width);
    let means: Vec<f64> = (0..buckets)
        .map(|b| {
            let (start, end) = (b * values.len() / buckets, (b + 1) * values.len() / buckets);
            values[start..end.max(start + 1)].iter().sum::<f64>()
                / (end.max(start + 1) - start) as f64
        })
        .collect();
    let (lo, hi) = means
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    means
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                return ' ';
            }
            let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
            BARS[((t * 7.0).round() as usize).min(7)]
        })
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart of `values` against their index + 1 (the epoch), with axis labels.
pub fn loss_svg(title: &str, values: &[f64]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 360.0, 70.0, 20.0, 40.0, 50.0);
    let (scaled, log) = scaled(values);
    let finite: Vec<(usize, f64)> = scaled
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| (i, *v))
        .collect();
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(_, v)| {
            (a.min(v), b.max(v))
        });
    let (lo, hi) = if finite.is_empty() {
        (0.0, 1.0)
    } else if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let n = values.len().max(2) as f64;
    let x = |i: usize| left + (w - left - right) * i as f64 / (n - 1.0);
    let y = |v: f64| top + (h - top - bottom) * (1.0 - (v - lo) / (hi - lo));
    let points: Vec<String> = finite
        .iter()
        .map(|&(i, v)| format!("{:.1},{:.1}", x(i), y(v)))
        .collect();
    let label = |v: f64| {
        let real = if log { 10f64.powf(v) } else { v };
        format!("{real:.4e}")
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n",
        w / 2.0,
        escape(title),
        h - bottom,
        h - bottom,
        w - right,
        h - bottom,
    );
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        svg += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            left - 6.0,
            y(v) + 4.0,
            label(v)
        );
    }
    svg += &format!(
        "<text x=\"{left}\" y=\"{}\">1</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">epoch</text>\n\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">training loss (MSE{})</text>\n",
        h - bottom + 16.0,
        w - right,
        h - bottom + 16.0,
        values.len(),
        (left + w - right) / 2.0,
        h - 12.0,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
        if log { ", log scale" } else { "" },
    );
    svg += &format!(
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>\n</svg>\n",
        points.join(" ")
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_falls_with_a_falling_loss() {
        let loss: Vec<f64> = (0..100).map(|i| 1000.0 * 0.9f64.powi(i)).collect();
        let line = sparkline(&loss, 20);
        assert_eq!(line.chars().count(), 20);
        assert_eq!(line.chars().next(), Some('█'));
        assert_eq!(line.chars().last(), Some('▁'));
        assert_eq!(sparkline(&[], 10), "");
        assert_eq!(sparkline(&[5.0], 10), "▁");
    }

    #[test]
    fn svg_is_well_formed_and_escapes_the_title() {
        let svg = loss_svg("a<b", &[3.0, 2.0, 1.0]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a&lt;b"));
        assert_eq!(svg.matches("<polyline").count(), 1);
    }
}
