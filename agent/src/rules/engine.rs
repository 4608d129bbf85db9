//! Evaluating rules: features in, findings and a profile per process out.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, LazyLock},
    time::Duration,
};

use cel::{Context, Env, Value, common::value::CowVal, context::VariableResolver};

use super::{
    features::{FeatureValue, Features, History},
    file::{Piece, Rule, RuleSet, Severity},
    profile::{Hysteresis, PROFILES, candidate},
};
use crate::{collect::Snapshot, runtimes::Runtime};

/// A rule that holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// The rule's name.
    pub rule: String,
    /// Its severity.
    pub severity: Severity,
    /// The profile it votes for.
    pub profile: Option<String>,
    /// The advice with this evaluation's feature values filled in (the
    /// live summary and `rules explain` print it).
    pub advice: String,
    /// The advice as first rendered in the current window: the `advice`
    /// label of `pausewatch_recommendation_info`, held for a window so that
    /// changing numbers do not make a new series at every scrape.
    pub advice_label: String,
}

/// What one rule said about one process.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The condition is true.
    Holds,
    /// The condition is false.
    Fails,
    /// The rule is for other runtimes.
    NotApplicable,
    /// The condition could not be evaluated (e.g. `cause_share["X"]` with
    /// no such cause in the window: guard it with `"X" in cause_share`).
    Error(String),
}

/// Every rule's outcome for one process, in rule order.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Rule name and outcome.
    pub outcomes: Vec<(String, Outcome)>,
    /// The rules that hold.
    pub findings: Vec<Finding>,
    /// The profile this evaluation's votes point to (before hysteresis).
    pub candidate: String,
}

/// The rule engine's conclusion for one traced process, published with the
/// snapshot for the exporter and the live summary.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// Process id.
    pub pid: u32,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// Its runtime.
    pub runtime: Runtime,
    /// The reported profile (after hysteresis).
    pub profile: String,
    /// Every profile name, so the exporter can write the 0s.
    pub profiles: Arc<[String]>,
    /// The rules that hold.
    pub findings: Vec<Finding>,
    /// The features they were evaluated on.
    pub features: Features,
}

/// CEL's standard functions and macros, registered once: building them
/// (what `Context::default` does) was two fifths of an evaluation's cost.
static STDLIB: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Evaluates every rule on one process's features.
pub fn evaluate(rules: &RuleSet, features: &Features) -> Evaluation {
    let vars = FeatureVars(features);
    let mut ctx = Context::with_env(Arc::clone(&STDLIB));
    ctx.set_variable_resolver(&vars);
    let mut outcomes = Vec::with_capacity(rules.rules.len());
    let mut findings = Vec::new();
    for rule in &rules.rules {
        let outcome = if !rule.applies_to(features.runtime) {
            Outcome::NotApplicable
        } else {
            match rule.program.execute(&ctx) {
                Ok(Value::Bool(true)) => Outcome::Holds,
                Ok(Value::Bool(false)) => Outcome::Fails,
                Ok(other) => Outcome::Error(format!("condition gave {other:?}, not a bool")),
                Err(e) => Outcome::Error(e.to_string()),
            }
        };
        if outcome == Outcome::Holds {
            let advice = render_advice(rule, features);
            findings.push(Finding {
                rule: rule.name.clone(),
                severity: rule.severity,
                profile: rule.profile.clone(),
                advice_label: advice.clone(),
                advice,
            });
        }
        outcomes.push((rule.name.clone(), outcome));
    }
    let candidate = candidate(
        findings
            .iter()
            .filter_map(|f| f.profile.as_deref().map(|p| (p, f.severity))),
    );
    Evaluation {
        outcomes,
        findings,
        candidate,
    }
}

/// The features as CEL variables, each converted when a rule reads it
/// rather than all of them for every evaluation.
struct FeatureVars<'a>(&'a Features);

impl VariableResolver for FeatureVars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value: Box<dyn cel::common::value::Val> =
            to_cel(self.0.get(variable)?).try_into().ok()?;
        Some(CowVal::Owned(value))
    }
}

fn to_cel(v: FeatureValue) -> Value {
    match v {
        FeatureValue::Number(n) => Value::Float(n),
        FeatureValue::Bool(b) => Value::Bool(b),
        FeatureValue::Text(s) => Value::from(s),
        FeatureValue::Shares(m) => Value::from(m.into_iter().collect::<HashMap<String, f64>>()),
    }
}

/// Fills a rule's advice template with feature values.
pub fn render_advice(rule: &Rule, features: &Features) -> String {
    let mut out = String::new();
    for piece in &rule.advice.pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Feature { name, percent } => match features.get(name) {
                Some(FeatureValue::Number(n)) if *percent => {
                    out.push_str(&format!("{}%", format_number(n * 100.0)))
                }
                Some(FeatureValue::Number(n)) => out.push_str(&format_number(n)),
                Some(FeatureValue::Bool(b)) => out.push_str(if b { "true" } else { "false" }),
                Some(FeatureValue::Text(t)) => out.push_str(&t),
                // Checked at load: placeholders name printable features.
                Some(FeatureValue::Shares(_)) | None => out.push_str(name),
            },
        }
    }
    out
}

/// Three significant digits at most, no trailing zeros: 0.0123, 1.5, 180.
pub fn format_number(n: f64) -> String {
    if !n.is_finite() {
        return n.to_string();
    }
    let decimals = match n.abs() {
        a if a >= 100.0 || a == 0.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        a => (2 - a.log10().floor() as i32).clamp(2, 6) as usize,
    };
    let s = format!("{n:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The rules plus what they need to remember between evaluations: the
/// snapshot history, each process's profile hysteresis, and the advice
/// texts in force.
///
/// A finding's advice is rendered when the rule starts to hold and then
/// once per window while it goes on holding, not at every evaluation: the
/// advice is a label value of `pausewatch_recommendation_info`, and
/// numbers that change every second would make a new series every scrape.
#[derive(Debug)]
pub struct Engine {
    rules: RuleSet,
    profiles: Arc<[String]>,
    history: History,
    states: HashMap<u32, Hysteresis>,
    /// (pid, rule) → (when rendered, text) for the findings that hold.
    advice: HashMap<(u32, String), (Duration, String)>,
}

impl Engine {
    /// An engine with windows of `window`.
    pub fn new(rules: RuleSet, window: Duration) -> Self {
        let profiles = profile_names(&rules);
        Engine {
            rules,
            profiles,
            history: History::new(window),
            states: HashMap::new(),
            advice: HashMap::new(),
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The snapshots the windows are cut from.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Swaps in new rules (after SIGHUP); history and current profiles stay.
    pub fn set_rules(&mut self, rules: RuleSet) {
        self.profiles = profile_names(&rules);
        for s in self.states.values_mut() {
            s.set_confirm(rules.confirm);
        }
        self.rules = rules;
    }

    /// Judges `snapshot`, taken at `at`, and returns it with the verdicts,
    /// ready to publish (see [`Engine::observe`]).
    pub fn judge(&mut self, at: Duration, snapshot: Arc<Snapshot>) -> super::Report {
        let verdicts = self.observe(at, snapshot.clone());
        super::Report { snapshot, verdicts }
    }

    /// Takes the snapshot made at `at` (monotonic) and evaluates every
    /// target in it over the window that ends there.
    pub fn observe(&mut self, at: Duration, snapshot: Arc<Snapshot>) -> Vec<Verdict> {
        self.history.push(at, snapshot.clone());
        let mut verdicts = Vec::new();
        let mut seen = HashSet::new();
        for target in &snapshot.targets {
            if !seen.insert(target.pid) {
                continue;
            }
            let Some(features) = self.history.features(target) else {
                continue;
            };
            let eval = evaluate(&self.rules, &features);
            for (rule, outcome) in &eval.outcomes {
                if let Outcome::Error(e) = outcome {
                    log::debug!("pid {}: rule {rule}: {e}", target.pid);
                }
            }
            let state = self
                .states
                .entry(target.pid)
                .or_insert_with(|| Hysteresis::new(self.rules.confirm));
            let profile = state.update(&eval.candidate).to_string();
            let mut findings = eval.findings;
            for f in &mut findings {
                let key = (target.pid, f.rule.clone());
                match self.advice.get(&key) {
                    Some((since, text)) if at.saturating_sub(*since) < self.history.window() => {
                        f.advice_label.clone_from(text);
                    }
                    _ => {
                        self.advice.insert(key, (at, f.advice.clone()));
                    }
                }
            }
            self.advice.retain(|(pid, rule), _| {
                *pid != target.pid || findings.iter().any(|f| &f.rule == rule)
            });
            verdicts.push(Verdict {
                pid: target.pid,
                comm: target.comm.clone(),
                runtime: target.runtime,
                profile,
                profiles: self.profiles.clone(),
                findings,
                features,
            });
        }
        self.states.retain(|pid, _| seen.contains(pid));
        self.advice.retain(|(pid, _), _| seen.contains(pid));
        verdicts
    }
}

fn profile_names(rules: &RuleSet) -> Arc<[String]> {
    let mut names: Vec<String> = PROFILES.iter().map(|p| p.to_string()).collect();
    for r in &rules.rules {
        if let Some(p) = &r.profile
            && !names.contains(p)
        {
            names.push(p.clone());
        }
    }
    names.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::features::{WindowStats, tests as ft};
    use crate::rules::file::{defaults, parse};
    use pausewatch_common::Kind;

    fn features(now: WindowStats) -> Features {
        Features {
            runtime: Runtime::HotSpot,
            cpu_limit_cores: 0.0,
            now,
            prev: None,
        }
    }

    fn rules(text: &str) -> RuleSet {
        RuleSet {
            rules: parse("t", text).unwrap().rules,
            confirm: 2,
        }
    }

    #[test]
    fn rules_hold_render_advice_and_vote() {
        let set = rules(
            r#"
[[rule]]
name = "busy"
when = "stall_ratio >= 0.1 && 'G1CollectFull' in cause_share && cause_share['G1CollectFull'] > 0.5"
severity = "warning"
profile = "throughput"
advice = "stopped {stall_ratio:%}, p99 {p99_ms} ms, mostly {top_cause}"

[[rule]]
name = "go_only"
runtimes = ["go"]
when = "true"
severity = "info"
advice = "x"

[[rule]]
name = "missing_key"
when = "cause_share['Nope'] > 0.1"
severity = "info"
advice = "x"

[[rule]]
name = "slow"
when = "p99_ms > 100"
severity = "critical"
profile = "latency"
advice = "x"
"#,
        );
        let mut w = WindowStats {
            stall_ratio: 0.142,
            p99_ms: 180.4,
            ..Default::default()
        };
        w.cause_share.insert("G1CollectFull".into(), 0.75);
        w.cause_time_share.insert("G1CollectFull".into(), 0.9);
        let e = evaluate(&set, &features(w));
        let outcome = |name: &str| e.outcomes.iter().find(|o| o.0 == name).unwrap().1.clone();
        assert_eq!(outcome("busy"), Outcome::Holds);
        assert_eq!(outcome("go_only"), Outcome::NotApplicable);
        assert!(matches!(outcome("missing_key"), Outcome::Error(_)));
        assert_eq!(outcome("slow"), Outcome::Holds);
        assert_eq!(
            e.findings[0].advice,
            "stopped 14.2%, p99 180 ms, mostly G1CollectFull"
        );
        assert_eq!(e.candidate, "mixed");

        let calm = evaluate(&set, &features(WindowStats::default()));
        assert!(calm.findings.is_empty());
        assert_eq!(calm.candidate, "balanced");
    }

    #[test]
    fn default_rules_classify_typical_windows() {
        let d = defaults();
        let gc_heavy = WindowStats {
            window_s: 10.0,
            pauses: 600,
            pauses_per_min: 3600.0,
            stall_ratio: 0.2,
            gc_share: 0.95,
            gc_per_min: 3600.0,
            p99_ms: 8.0,
            ..Default::default()
        };
        let e = evaluate(&d, &features(gc_heavy));
        assert_eq!(e.candidate, "throughput");
        let names: Vec<&str> = e.findings.iter().map(|f| f.rule.as_str()).collect();
        assert!(names.contains(&"gc_overhead"), "{names:?}");
        assert!(names.contains(&"gc_overhead_critical"), "{names:?}");

        let idle = WindowStats {
            window_s: 10.0,
            pauses: 2,
            pauses_per_min: 12.0,
            stall_ratio: 0.00001,
            ..Default::default()
        };
        assert_eq!(evaluate(&d, &features(idle)).candidate, "idle");

        let tts = WindowStats {
            window_s: 10.0,
            pauses: 1000,
            pauses_per_min: 6000.0,
            stall_ratio: 0.04,
            tts_share: 0.6,
            tts_p99_ms: 2.0,
            p99_ms: 3.0,
            ..Default::default()
        };
        let e = evaluate(&d, &features(tts));
        assert_eq!(e.candidate, "latency");
        assert!(e.findings.iter().any(|f| f.rule == "time_to_safepoint"));
    }

    #[test]
    fn cpu_waits_are_told_apart_by_the_cpu_limit() {
        let d = defaults();
        let waiting = WindowStats {
            window_s: 10.0,
            pauses: 50,
            pauses_per_min: 300.0,
            stall_ratio: 0.02,
            running_share: 0.2,
            runnable_share: 0.6,
            blocked_share: 0.2,
            ..Default::default()
        };
        let rules_of = |f: &Features| {
            evaluate(&d, f)
                .findings
                .iter()
                .map(|f| (f.rule.clone(), f.advice.clone()))
                .filter(|(r, _)| r.starts_with("cpu_"))
                .collect::<Vec<_>>()
        };
        let mut limited = features(waiting.clone());
        limited.cpu_limit_cores = 0.5;
        let found = rules_of(&limited);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "cpu_throttled");
        assert!(
            found[0].1.contains("60% of the pause time"),
            "{}",
            found[0].1
        );
        assert!(found[0].1.contains("limit of 0.5 cores"), "{}", found[0].1);

        let found = rules_of(&features(waiting.clone()));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "cpu_starved");

        let calm = WindowStats {
            runnable_share: 0.05,
            running_share: 0.75,
            ..waiting
        };
        assert!(rules_of(&limited_with(calm, 0.5)).is_empty());
    }

    fn limited_with(now: WindowStats, cores: f64) -> Features {
        let mut f = features(now);
        f.cpu_limit_cores = cores;
        f
    }

    #[test]
    fn engine_windows_snapshots_and_holds_profiles() {
        let set = rules(
            r#"
[[rule]]
name = "stopped"
when = "stall_ratio >= 0.05"
severity = "warning"
profile = "throughput"
advice = "{stall_ratio:%}"
"#,
        );
        let mut engine = Engine::new(set, Duration::from_secs(2));
        let snap = |values: &[u64]| {
            let mut s = (*ft::snap(Vec::new())).clone();
            s.series.push(
                crate::collect::Series {
                    pid: 9,
                    kind: Kind::Safepoint,
                    cause: "X".into(),
                    hist: ft::hist_of(values),
                }
                .into(),
            );
            Arc::new(s)
        };
        // First snapshot: no window yet.
        assert!(engine.observe(Duration::ZERO, snap(&[])).is_empty());
        // 100 ms stopped per second: 10%.
        let mut values = Vec::new();
        let mut profiles = Vec::new();
        for s in 1..=8u64 {
            if s <= 4 {
                values.push(100_000_000);
            }
            let v = engine.observe(Duration::from_secs(s), snap(&values));
            assert_eq!(v.len(), 1);
            profiles.push(v[0].profile.clone());
            if s == 2 {
                assert_eq!(v[0].findings.len(), 1);
                assert_eq!(v[0].findings[0].advice, "10%");
                assert_eq!(v[0].profiles.len(), PROFILES.len());
            }
        }
        // Pauses stop after 4 s; the 2 s window empties at 6 s, and with
        // confirm = 2 the profile switches one evaluation later.
        assert_eq!(
            profiles,
            [
                "throughput",
                "throughput",
                "throughput",
                "throughput",
                "throughput",
                "throughput",
                "balanced",
                "balanced"
            ]
        );
    }

    #[test]
    fn advice_label_is_refreshed_once_per_window_not_every_evaluation() {
        let set = rules(
            r#"
[[rule]]
name = "count"
when = "pauses > 0.0"
severity = "info"
advice = "{pauses} pauses"
"#,
        );
        let mut engine = Engine::new(set, Duration::from_secs(4));
        let snap = |n: usize| {
            let mut s = (*ft::snap(Vec::new())).clone();
            s.series.push(
                crate::collect::Series {
                    pid: 9,
                    kind: Kind::Safepoint,
                    cause: "X".into(),
                    hist: ft::hist_of(&vec![1_000_000; n]),
                }
                .into(),
            );
            Arc::new(s)
        };
        engine.observe(Duration::ZERO, snap(0));
        let advice = |engine: &mut Engine, s: u64, n: usize| {
            let v = engine.observe(Duration::from_secs(s), snap(n));
            v[0].findings.first().map(|f| f.advice_label.clone())
        };
        // One more pause every second; the label changes every 4 s only.
        assert_eq!(advice(&mut engine, 1, 1).as_deref(), Some("1 pauses"));
        assert_eq!(advice(&mut engine, 2, 2).as_deref(), Some("1 pauses"));
        assert_eq!(advice(&mut engine, 4, 4).as_deref(), Some("1 pauses"));
        assert_eq!(advice(&mut engine, 5, 5).as_deref(), Some("4 pauses"));
        // Stops holding (no pause for a whole window), then holds again:
        // rendered afresh at once.
        assert_eq!(advice(&mut engine, 10, 5), None);
        assert_eq!(advice(&mut engine, 11, 8).as_deref(), Some("3 pauses"));
        // The advice itself always has this evaluation's numbers.
        let v = engine.observe(Duration::from_secs(12), snap(9));
        assert_eq!(v[0].findings[0].advice, "4 pauses");
        assert_eq!(v[0].findings[0].advice_label, "3 pauses");
    }

    #[test]
    fn numbers_print_short() {
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(180.44), "180");
        assert_eq!(format_number(14.25), "14.2");
        assert_eq!(format_number(1.5), "1.5");
        assert_eq!(format_number(0.01234), "0.0123");
        assert_eq!(format_number(3.0), "3");
    }
}
