//! What a run shows while it works: one progress bar per running node (on a terminal only)
//! and log lines that do not tear the bars.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The shared output of a run.
#[derive(Debug)]
pub struct Ui {
    multi: Option<MultiProgress>,
    quiet: bool,
}

impl Ui {
    /// Bars only when stderr is a terminal and `progress` is allowed; `quiet` drops log lines.
    pub fn new(progress: bool, quiet: bool) -> Arc<Ui> {
        let multi = (progress && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)));
        Arc::new(Ui { multi, quiet })
    }

    /// A UI that prints nothing (for tests and library use).
    pub fn silent() -> Arc<Ui> {
        Arc::new(Ui { multi: None, quiet: true })
    }

    /// Prints a line to stderr above any bars.
    pub fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn bar(&self, node: &str) -> Option<ProgressBar> {
        let m = self.multi.as_ref()?;
        let bar = m.add(ProgressBar::new_spinner());
        bar.set_style(spinner_style());
        bar.set_prefix(node.to_string());
        bar.enable_steady_tick(Duration::from_millis(125));
        Some(bar)
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style(unit: &str) -> ProgressStyle {
    let unit = unit.replace('{', "{{").replace('}', "}}");
    ProgressStyle::with_template(&format!(
        "{{spinner}} {{prefix:.bold}} [{{bar:28}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} ETA {{eta}} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// A node's progress reporter: units done out of a total, with rate and ETA on a terminal.
/// Cheap to call in a hot loop.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    done: AtomicU64,
    total: AtomicU64,
    unit: Mutex<String>,
}

impl Progress {
    pub(crate) fn new(ui: &Ui, node: &str) -> Progress {
        Progress { bar: ui.bar(node), done: AtomicU64::new(0), total: AtomicU64::new(0), unit: Mutex::new(String::new()) }
    }

    /// A reporter that shows nothing.
    pub fn hidden() -> Progress {
        Progress { bar: None, done: AtomicU64::new(0), total: AtomicU64::new(0), unit: Mutex::new(String::new()) }
    }

    /// Starts a phase of `total` units (`None` if unknown) called `unit` ("rows", "tokens").
    pub fn start(&self, total: Option<u64>, unit: &str) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total.unwrap_or(0), Ordering::Relaxed);
        if let Ok(mut u) = self.unit.lock() {
            *u = unit.to_string();
        }
        if let Some(bar) = &self.bar {
            bar.reset();
            match total {
                Some(t) => {
                    bar.set_length(t);
                    bar.set_style(bar_style(unit));
                }
                None => {
                    bar.unset_length();
                    bar.set_style(
                        ProgressStyle::with_template(&format!(
                            "{{spinner}} {{prefix:.bold}} {{human_pos}} {} {{per_sec}} {{msg}}",
                            unit.replace('{', "{{").replace('}', "}}")
                        ))
                        .unwrap_or_else(|_| spinner_style()),
                    );
                }
            }
        }
    }

    /// Adds `n` finished units.
    pub fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Sets the finished units.
    pub fn set(&self, n: u64) {
        self.done.store(n, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_position(n);
        }
    }

    /// A short status after the counts (e.g. "epoch 3, loss 0.41").
    pub fn message(&self, msg: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.into());
        }
    }

    /// Units done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Bytes for people: `512 B`, `3.4 MiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
