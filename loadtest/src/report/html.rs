//! The self-contained HTML report: the JSON report's tables plus time-series charts
//! (throughput, latency percentiles, errors), drawn by plotters as SVG and embedded, so
//! the file opens anywhere without a network or a second file. A chaos run adds its fault
//! timeline: shaded bands on every chart.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::Report;

/// One line of a chart: its name, color and (second, value) points.
struct Line<'a> {
    name: &'a str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// A stretch of time shaded on every chart (a fault, from injection to heal).
pub(crate) struct Band {
    pub(crate) from_s: f64,
    pub(crate) to_s: f64,
    pub(crate) label: String,
    pub(crate) color: RGBColor,
}

/// An SVG chart of `lines` over the replay's seconds, `bands` shaded behind them.
fn chart(title: &str, y_label: &str, lines: &[Line<'_>], bands: &[Band]) -> String {
    let mut svg = String::new();
    {
        let backend = SVGBackend::with_string(&mut svg, (900, 320));
        let root = backend.into_drawing_area();
        let _ = draw(&root, title, y_label, lines, bands);
        let _ = root.present();
    }
    svg
}

fn draw(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    lines: &[Line<'_>],
    bands: &[Band],
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .chain(bands.iter().map(|b| b.to_s))
        .fold(1.0f64, f64::max);
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the replay began")
        .y_desc(y_label)
        .draw()?;
    for (i, b) in bands.iter().enumerate() {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(b.from_s, 0.0), (b.to_s.max(b.from_s + 0.3), y_max)],
            b.color.mix(0.18).filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            b.label.clone(),
            // Staggered, so that the labels of faults close together stay readable.
            (b.from_s, y_max * (0.97 - 0.05 * (i % 4) as f64)),
            ("sans-serif", 10).into_font().color(&b.color),
        )))?;
    }
    for l in lines {
        let color = l.color;
        chart
            .draw_series(LineSeries::new(
                l.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(l.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole report as one HTML page.
pub fn render(r: &Report) -> String {
    page(r, "kofu-load report", "", &[])
}

/// The report's page titled `title`, with `extra` (HTML) after the summary table and
/// `bands` shaded on every chart.
pub(crate) fn page(r: &Report, title: &str, extra: &str, bands: &[Band]) -> String {
    let series = |f: &dyn Fn(&super::SecondReport) -> f64| -> Vec<(f64, f64)> {
        r.series.iter().map(|s| (s.t as f64, f(s))).collect()
    };
    let throughput = chart(
        "Throughput",
        "per second",
        &[
            Line {
                name: "requests/s",
                color: BLUE,
                points: series(&|s| s.requests as f64),
            },
            Line {
                name: "sessions completed/s",
                color: GREEN,
                points: series(&|s| s.sessions_completed as f64),
            },
        ],
        bands,
    );
    let latency = chart(
        "Latency from the intended send time",
        "ms",
        &[
            Line {
                name: "p50",
                color: BLUE,
                points: series(&|s| s.p50_ms),
            },
            Line {
                name: "p99",
                color: RED,
                points: series(&|s| s.p99_ms),
            },
        ],
        bands,
    );
    let errors = chart(
        "Errors",
        "unexpected answers per second",
        &[Line {
            name: "errors/s",
            color: RED,
            points: series(&|s| s.errors as f64),
        }],
        bands,
    );
    let mut html = String::new();
    let verdict = if r.counts.misdeliveries == 0 {
        "<p class=ok>0 misdeliveries</p>".to_owned()
    } else {
        format!("<p class=bad>{} MISDELIVERIES</p>", r.counts.misdeliveries)
    };
    let _ = write!(
        html,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>\
<style>body{{font-family:sans-serif;margin:2em;max-width:960px}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#eee}}\
td:first-child{{text-align:left}}.ok{{color:#080;font-weight:bold}}.bad{{color:#c00;font-weight:bold}}</style>\
</head><body><h1>{title}</h1><p>{}</p><p>targets: {} &middot; speed x{}</p>{verdict}\
<table><tr><th>sessions planned</th><th>started</th><th>late starts</th><th>completed</th>\
<th>documents verified</th><th>requests</th><th>errors</th><th>sessions/s</th><th>requests/s</th></tr>\
<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td></tr></table>{extra}",
        esc(&r.meta.trace),
        esc(&r.meta.targets.join(", ")),
        r.meta.speed,
        r.sessions_planned,
        r.counts.sessions_started,
        r.counts.late_starts,
        r.counts.sessions_completed,
        r.counts.documents_verified,
        r.counts.requests,
        r.counts.error_requests,
        r.sessions_per_s,
        r.requests_per_s,
    );
    let _ = write!(
        html,
        "<h2>Latency per step (ms, from the intended send time)</h2><table><tr><th>step</th><th>count</th>\
<th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>"
    );
    for (step, p) in r
        .steps
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .chain([("all", &r.latency)])
    {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            esc(step),
            p.count,
            p.p50_ms,
            p.p90_ms,
            p.p99_ms,
            p.p999_ms,
            p.max_ms
        );
    }
    html.push_str("</table>");
    if !r.counts.errors.is_empty() {
        html.push_str(
            "<h2>Errors by step, status and code</h2><table><tr><th>what</th><th>count</th></tr>",
        );
        for (what, n) in &r.counts.errors {
            let _ = write!(html, "<tr><td>{}</td><td>{n}</td></tr>", esc(what));
        }
        html.push_str("</table>");
    }
    let _ = write!(
        html,
        "<h2>Over time</h2><figure>{throughput}</figure><figure>{latency}</figure><figure>{errors}</figure></body></html>"
    );
    html
}
