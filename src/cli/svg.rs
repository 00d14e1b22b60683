//! Small inline SVG plots for `dagrun report`: line charts and histograms, no scripts, no
//! network, readable in any browser.

use std::fmt::Write;

const W: f64 = 420.0;
const H: f64 = 220.0;
const PAD_L: f64 = 52.0;
const PAD_R: f64 = 12.0;
const PAD_T: f64 = 26.0;
const PAD_B: f64 = 34.0;
const COLOURS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"];

/// Escapes text for HTML/SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - d, hi + d);
    }
    let m = (hi - lo) * 0.05;
    (lo - m, hi + m)
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 0.01 {
        format!("{v:.1e}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn frame(out: &mut String, title: &str, x_label: &str, (x0, x1): (f64, f64), (y0, y1): (f64, f64)) {
    let _ = write!(out, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#);
    let _ = write!(out, r#"<text x="{}" y="16" text-anchor="middle" font-size="12" font-weight="bold">{}</text>"#, W / 2.0, esc(title));
    let (l, r, t, b) = (PAD_L, W - PAD_R, PAD_T, H - PAD_B);
    let _ = write!(out, r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#999"/>"##, r - l, b - t);
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let y = b - f * (b - t);
        let _ = write!(out, r##"<line x1="{l}" x2="{r}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##, l - 4.0, y + 4.0, fmt_tick(y0 + f * (y1 - y0)));
        let x = l + f * (r - l);
        let _ = write!(out, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#, b + 14.0, fmt_tick(x0 + f * (x1 - x0)));
    }
    let _ = write!(out, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, (l + r) / 2.0, H - 4.0, esc(x_label));
}

/// A line chart of named series of (x, y) points.
pub fn lines(title: &str, x_label: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let xr = range(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)));
    let yr = range(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)));
    let mut out = String::new();
    frame(&mut out, title, x_label, xr, yr);
    let (l, r, t, b) = (PAD_L, W - PAD_R, PAD_T, H - PAD_B);
    let sx = |x: f64| l + (x - xr.0) / (xr.1 - xr.0) * (r - l);
    let sy = |y: f64| b - (y - yr.0) / (yr.1 - yr.0) * (b - t);
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = pts.iter().filter(|p| p.1.is_finite()).map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(out, r#"<polyline fill="none" stroke="{c}" stroke-width="1.8" points="{}"/>"#, path.join(" "));
        for p in &path {
            let (x, y) = p.split_once(',').expect("x,y");
            let _ = write!(out, r#"<circle cx="{x}" cy="{y}" r="2.2" fill="{c}"/>"#);
        }
        if series.len() > 1 {
            let y = t + 12.0 + 13.0 * i as f64;
            let _ = write!(out, r#"<rect x="{}" y="{}" width="10" height="3" fill="{c}"/><text x="{}" y="{}">{}</text>"#, l + 8.0, y - 4.0, l + 22.0, y, esc(name));
        }
    }
    out.push_str("</svg>");
    out
}

/// A histogram of `values` in `bins` equal-width bins.
pub fn histogram(title: &str, x_label: &str, values: &[f64], bins: usize) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    // Bins span exactly min..max (a single value gets a unit-wide range).
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if !lo.is_finite() { (0.0, 1.0) } else if hi - lo < 1e-12 { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
    let bins = bins.max(1);
    let mut counts = vec![0usize; bins];
    for v in &finite {
        let i = (((v - lo) / (hi - lo)) * bins as f64).floor() as usize;
        counts[i.min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut out = String::new();
    frame(&mut out, title, x_label, (lo, hi), (0.0, top));
    let (l, r, t, b) = (PAD_L, W - PAD_R, PAD_T, H - PAD_B);
    let bw = (r - l) / bins as f64;
    for (i, &c) in counts.iter().enumerate() {
        let h = c as f64 / top * (b - t);
        let _ = write!(out, r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#1f77b4" fill-opacity="0.75"><title>{c}</title></rect>"##, l + i as f64 * bw + 0.5, b - h, bw - 1.0);
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_closed_svg_with_escaped_text() {
        let s = lines("loss <&>", "step", &[("a".into(), vec![(1.0, 0.69), (2.0, 0.5)]), ("b".into(), vec![(1.0, 0.1), (2.0, f64::NAN)])]);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("loss &lt;&amp;&gt;") && s.contains("<polyline"));
        let h = histogram("margins", "margin", &[0.1, 0.2, 0.2, 0.9], 4);
        assert_eq!(h.matches("fill-opacity").count(), 4);
        // Bins of 0.2 from 0.1: [0.1, 0.3) holds three values, the last bin the 0.9.
        assert!(h.contains("<title>3</title>") && h.contains("<title>1</title>"), "{h}");
        // A constant series still gets a usable scale.
        assert!(!lines("c", "x", &[("c".into(), vec![(0.0, 1.0), (1.0, 1.0)])]).contains("NaN"));
    }
}
