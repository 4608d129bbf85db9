//! The figures of a bench run and the Markdown and JSON files they go to.

use std::fs;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::util::{step, workspace_root};

/// One measured figure: min, median and max over its samples.
#[derive(Serialize, Clone)]
pub struct Figure {
    /// Stable name (JSON key for scripts, first column of the table).
    pub name: String,
    /// Unit of min/median/max.
    pub unit: &'static str,
    /// Smallest sample.
    pub min: f64,
    /// Median sample (mean of the middle two for an even count).
    pub median: f64,
    /// Largest sample.
    pub max: f64,
    /// Number of samples.
    pub samples: usize,
    /// How it was measured.
    pub method: String,
    /// The project's target for it, if any, as text.
    pub target: Option<&'static str>,
    /// Whether the median meets the target (`None`: no target, or not
    /// checkable). Reported, never asserted.
    pub met: Option<bool>,
}

impl Figure {
    /// A figure from raw samples (fails on an empty sample set: a missing
    /// figure must be explained by the caller, never printed as zero).
    pub fn new(
        name: impl Into<String>,
        unit: &'static str,
        mut values: Vec<f64>,
        method: impl Into<String>,
    ) -> Result<Figure> {
        let name = name.into();
        if values.is_empty() {
            bail!("no samples for {name}");
        }
        values.sort_by(|a, b| a.total_cmp(b));
        Ok(Figure {
            name,
            unit,
            min: values[0],
            median: median(&values),
            max: values[values.len() - 1],
            samples: values.len(),
            method: method.into(),
            target: None,
            met: None,
        })
    }

    /// Sets the target and whether the median meets it (`median <= limit`,
    /// or `median < limit` for a strict target).
    pub fn target(mut self, text: &'static str, limit: f64, strict: bool) -> Figure {
        self.target = Some(text);
        self.met = Some(if strict {
            self.median < limit
        } else {
            self.median <= limit
        });
        self
    }
}

/// Everything a run produced.
#[derive(Default)]
pub struct Report {
    /// Measured figures, in the order taken.
    pub figures: Vec<Figure>,
    /// Plain statements: what could not be measured and why, what happened
    /// above capacity, which targets were missed.
    pub notes: Vec<String>,
}

impl Report {
    /// Adds a figure and echoes it.
    pub fn push(&mut self, f: Figure) {
        eprintln!(
            "    {} = {:.2} {} (min {:.2}, max {:.2}, n={})",
            f.name, f.median, f.unit, f.min, f.max, f.samples
        );
        self.figures.push(f);
    }

    /// Adds a note and echoes it.
    pub fn note(&mut self, text: impl Into<String>) {
        // One list item per note: multi-line messages become one line.
        let text = text
            .into()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        eprintln!("    note: {text}");
        self.notes.push(text);
    }

    /// The figure called `name`, if measured.
    pub fn get(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.name == name)
    }

    /// Writes `target/bench/report.{md,json}` and prints the Markdown.
    pub fn write(&self, quick: bool, elapsed_secs: f64) -> Result<()> {
        let dir = workspace_root().join("target/bench");
        fs::create_dir_all(&dir)?;
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        let cpu_model = cpu_model();
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "quick": quick,
            "kernel": kernel.trim(),
            "cpus": cpus,
            "cpu_model": cpu_model,
            "elapsed_secs": elapsed_secs,
            "figures": self.figures,
            "notes": self.notes,
        }))?;
        fs::write(dir.join("report.json"), json)?;

        let mut md = format!(
            "# pausewatch benchmark report\n\n{} run, kernel {}, {cpus} CPUs ({cpu_model}), \
             took {elapsed_secs:.0} s.\n\n\
             | figure | min | median | max | unit | target | samples |\n|---|---|---|---|---|---|---|\n",
            if quick { "Quick (--quick)" } else { "Full" },
            kernel.trim(),
        );
        for f in &self.figures {
            let target = match (f.target, f.met) {
                (Some(t), Some(true)) => format!("{t} (met)"),
                (Some(t), Some(false)) => format!("{t} (**MISSED**)"),
                (Some(t), None) => t.to_string(),
                (None, _) => "-".to_string(),
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {target} | {} |\n",
                f.name,
                num(f.min),
                num(f.median),
                num(f.max),
                f.unit,
                f.samples
            ));
        }
        if !self.notes.is_empty() {
            md.push_str("\n## Notes\n\n");
            for n in &self.notes {
                md.push_str(&format!("- {n}\n"));
            }
        }
        md.push_str("\n## Methods\n\n");
        for f in &self.figures {
            md.push_str(&format!("- **{}**: {}\n", f.name, f.method));
        }
        fs::write(dir.join("report.md"), &md)?;
        println!("{md}");
        step(format!(
            "report written to {}",
            dir.join("report.md").display()
        ));
        Ok(())
    }
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_statistics_and_targets() {
        let f = Figure::new("x", "ms", vec![4.0, 1.0, 3.0, 2.0], "m").unwrap();
        assert_eq!((f.min, f.median, f.max, f.samples), (1.0, 2.5, 4.0, 4));
        assert_eq!(f.clone().target("<= 2.5", 2.5, false).met, Some(true));
        assert_eq!(f.target("< 2.5", 2.5, true).met, Some(false));
        assert!(Figure::new("empty", "ms", vec![], "m").is_err());
    }
}
