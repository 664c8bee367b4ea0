//! The latency-vs-rate plot of the report, as a self-contained SVG (no
//! plotting dependency; GitHub and browsers render it).

use std::fmt::Write;

/// One line of the plot: (offered msg/s, latency ms) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub color: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Latency on a log scale (decades from 0.1 ms up), rate on a linear one.
pub fn latency_vs_rate(title: &str, series: &[Series], goal_ms: Option<f64>) -> String {
    let sc = Scales::of(series, goal_ms);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + sc.pw / 2.0,
        esc(title)
    );
    grid(&mut s, &sc);
    axes(&mut s, &sc);
    if let Some(g) = goal_ms {
        goal(&mut s, &sc, g);
    }
    for (k, ser) in series.iter().enumerate() {
        line(&mut s, &sc, k, ser);
    }
    s.push_str("</svg>\n");
    s
}

/// Both axes' ranges, set by the data (and the goal) before anything is
/// drawn, and the mapping from values to the plot area.
struct Scales {
    /// The rate axis runs from 0 to this round number.
    x_max: f64,
    /// The latency axis runs from 10^lo_exp to 10^hi_exp ms.
    lo_exp: i32,
    hi_exp: i32,
    /// The plot area's width and height.
    pw: f64,
    ph: f64,
}

impl Scales {
    fn of(series: &[Series], goal_ms: Option<f64>) -> Self {
        let all = series.iter().flat_map(|s| s.points.iter());
        let x_max = nice_ceiling(all.clone().map(|p| p.0).fold(1.0, f64::max));
        let y_hi = all.map(|p| p.1).chain(goal_ms).fold(1.0, f64::max);
        let (lo_exp, hi_exp) = (-1i32, y_hi.log10().ceil().max(0.0) as i32);
        Scales { x_max, lo_exp, hi_exp, pw: W - LEFT - RIGHT, ph: H - TOP - BOTTOM }
    }

    fn x(&self, v: f64) -> f64 {
        LEFT + v / self.x_max * self.pw
    }

    /// Values below the axis' bottom are drawn on it.
    fn y(&self, v: f64) -> f64 {
        let l = v.max(10f64.powi(self.lo_exp)).log10();
        TOP + self.ph - (l - f64::from(self.lo_exp)) / f64::from(self.hi_exp - self.lo_exp) * self.ph
    }
}

/// A line and a label at every latency decade and at every fifth of the rate axis.
fn grid(s: &mut String, sc: &Scales) {
    for e in sc.lo_exp..=sc.hi_exp {
        let v = 10f64.powi(e);
        let yy = sc.y(v);
        let _ = writeln!(s, r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/>"##, LEFT + sc.pw);
        let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, LEFT - 6.0, yy + 4.0, fmt_ms(v));
    }
    for i in 0..=5 {
        let v = sc.x_max * f64::from(i) / 5.0;
        let xx = sc.x(v);
        let _ = writeln!(s, r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{}" stroke="#eee"/>"##, TOP + sc.ph);
        let _ =
            writeln!(s, r#"<text x="{xx:.1}" y="{}" text-anchor="middle">{}</text>"#, TOP + sc.ph + 16.0, v.round());
    }
}

/// The plot area's frame and the axis titles.
fn axes(s: &mut String, sc: &Scales) {
    let (pw, ph) = (sc.pw, sc.ph);
    let _ = writeln!(s, r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">offered rate (messages/s)</text>"#,
        LEFT + pw / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>"#,
        TOP + ph / 2.0
    );
}

/// A dotted red line across the plot at the goal.
fn goal(s: &mut String, sc: &Scales, g: f64) {
    let yy = sc.y(g);
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#c00" stroke-dasharray="2 3"/>"##,
        LEFT + sc.pw
    );
    let _ = writeln!(s, r##"<text x="{}" y="{:.1}" fill="#c00">goal {}</text>"##, LEFT + 4.0, yy - 4.0, fmt_ms(g));
}

/// The `k`th series: its line, a dot per point, and its legend entry.
fn line(s: &mut String, sc: &Scales, k: usize, ser: &Series) {
    let dash = if ser.dashed { r#" stroke-dasharray="6 4""# } else { "" };
    let pts: Vec<String> = ser.points.iter().map(|&(a, b)| format!("{:.1},{:.1}", sc.x(a), sc.y(b))).collect();
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
        pts.join(" "),
        ser.color
    );
    for &(a, b) in &ser.points {
        let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"/>"#, sc.x(a), sc.y(b), ser.color);
    }
    let ly = TOP + 14.0 + 20.0 * k as f64;
    let lx = LEFT + sc.pw + 14.0;
    let _ = writeln!(
        s,
        r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/>"#,
        lx + 24.0,
        ser.color
    );
    let _ = writeln!(s, r#"<text x="{}" y="{}">{}</text>"#, lx + 30.0, ly + 4.0, esc(&ser.label));
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|c| *c >= v).unwrap_or(10.0 * p)
}

fn fmt_ms(v: f64) -> String {
    if v < 1.0 { format!("{v} ms") } else { format!("{} ms", v.round()) }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Vec<Series> {
        vec![Series {
            label: "kafka p99".into(),
            color: "#1f77b4",
            dashed: false,
            points: vec![(1000.0, 5.0), (5000.0, 120.0)],
        }]
    }

    #[test]
    fn points_are_placed_on_the_scales() {
        let svg = latency_vs_rate("t", &series(), Some(50.0));
        // x: 5,000 on a 0..5,000 axis is the right edge of the plot area.
        assert!(svg.contains(&format!("{:.1},", W - RIGHT)), "{svg}");
        // y: 0.1 ms .. 1000 ms is 4 decades; 5 ms sits log10(50)/4 up.
        let ph = H - TOP - BOTTOM;
        let y5 = TOP + ph - (5f64.log10() + 1.0) / 4.0 * ph;
        assert!(svg.contains(&format!("{:.1},{y5:.1}", LEFT + 0.2 * (W - LEFT - RIGHT))), "{svg}");
        assert!(svg.contains("goal 50 ms"));
        assert!(svg.contains("kafka p99"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }

    #[test]
    fn axis_ends_at_a_round_number() {
        assert_eq!(nice_ceiling(4200.0), 5000.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
        assert_eq!(nice_ceiling(1100.0), 2000.0);
    }

    #[test]
    fn without_a_goal_only_the_goal_line_is_left_out() {
        // The goal (50 ms) is below the highest point, so the scale is the same.
        let with: String = latency_vs_rate("t", &series(), Some(50.0))
            .lines()
            .filter(|l| !l.contains("#c00"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(latency_vs_rate("t", &series(), None), with);
    }

    #[test]
    fn labels_are_escaped() {
        let mut s = series();
        s[0].label = "a<b".into();
        assert!(latency_vs_rate("x & y", &s, None).contains("a&lt;b"));
    }
}
