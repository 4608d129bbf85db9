//! `agent rules check` and `agent rules explain`: the rule engine from the
//! command line, for writing rules and for seeing why a process got its
//! profile.

use std::{
    fmt::Write as _,
    io::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    bpf::{Tracer, loader::LoadOptions},
    cli::{ExplainArgs, RulesCommand},
    collect::{Collector, FileBacking, monotonic_ns},
    discovery, preflight,
    rules::{
        self, Engine, Evaluation, FEATURES, Features, Outcome, RuleSet, features::FeatureValue,
    },
    run::{MIN_INTERVAL_SECS, validate_seconds},
    targets::{labels, lifecycle::target_info},
};

/// Runs `agent rules ...`.
pub fn run(cmd: RulesCommand) -> Result<()> {
    match cmd {
        RulesCommand::Check { file } => {
            let set = rules::load(file.as_deref())?;
            let mut out = std::io::stdout().lock();
            out.write_all(describe(&set).as_bytes())?;
            writeln!(
                out,
                "{}: OK, {} rules",
                file.as_deref()
                    .map_or(rules::file::DEFAULT_ORIGIN.to_string(), |f| f
                        .display()
                        .to_string()),
                set.rules.len()
            )?;
            Ok(())
        }
        RulesCommand::Explain(args) => explain(args),
    }
}

/// Every rule of a set, one block each.
pub fn describe(set: &RuleSet) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "profile changes need {} evaluations in a row",
        set.confirm
    );
    for r in &set.rules {
        let _ = writeln!(out, "\nrule {} ({})", r.name, r.origin);
        let _ = writeln!(
            out,
            "  runtimes: {}",
            if r.runtimes.is_empty() {
                "all".to_string()
            } else {
                r.runtimes
                    .iter()
                    .map(|r| r.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        let _ = writeln!(out, "  severity: {}", r.severity.label());
        let _ = writeln!(
            out,
            "  profile:  {}",
            r.profile.as_deref().unwrap_or("(no vote)")
        );
        let _ = writeln!(out, "  when:     {}", r.when.trim());
        let _ = writeln!(out, "  reads:    {}", r.reads.join(", "));
        let _ = writeln!(out, "  advice:   {}", r.advice.template);
    }
    out.push('\n');
    out
}

fn explain(args: ExplainArgs) -> Result<()> {
    validate_seconds("--window", args.window, MIN_INTERVAL_SECS)?;
    let set = rules::load(args.rules.as_deref())?;
    preflight::require_privileges()?;
    let target = discovery::detect(args.pid)?;
    crate::targets::follow::ensure_tracefs()?;
    let (mut tracer, maps) = Tracer::load(LoadOptions {
        events: false,
        anatomy: true,
        heap: true,
        shared: false,
    })?;
    let mut collector = Collector::new(maps.histograms, maps.lost, maps.stragglers)
        .with_heap(maps.heap)
        .with_admitted(maps.admitted);
    tracer.attach_anatomy()?;
    tracer.attach(&target)?;
    let info = target_info(&target, labels::read(target.process.pid));
    collector.add_target(info.clone(), FileBacking::of(&target));

    let window = Duration::from_secs_f64(args.window);
    let mut engine = Engine::new(set.clone(), window);
    // The window runs from the end of the first map read to the start of
    // the last; a read takes milliseconds, and a pause that ends during one
    // may land on either side.
    let read = |collector: &mut Collector| {
        let before = monotonic_ns();
        let snapshot = Arc::new(collector.collect());
        let after = monotonic_ns();
        (snapshot, before, after)
    };
    let (first, _, first_read_done) = read(&mut collector);
    let started = Instant::now();
    eprintln!(
        "pausewatch: observing pid {} ({} {} {}) for {:.1} s ...",
        info.pid, info.comm, info.runtime, info.runtime_version, args.window
    );
    while started.elapsed() < window {
        std::thread::sleep((window - started.elapsed()).min(Duration::from_secs(1)));
        if !target.process.is_alive() {
            bail!(
                "pid {} exited after {:.1} s, before the window was over",
                info.pid,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let (last, last_read_start, _) = read(&mut collector);
    tracer.detach(info.pid);
    engine.observe(Duration::ZERO, first);
    engine.observe(
        Duration::from_nanos(last_read_start.saturating_sub(first_read_done)),
        last,
    );
    let features = engine
        .history()
        .features(&info)
        .context("no window was observed")?;
    let eval = rules::evaluate(&set, &features);
    // For lining the window up with the runtime's own logs: every pause
    // that ended in this interval is counted.
    println!(
        "window: from {:.6} to {:.6} s CLOCK_MONOTONIC (System.nanoTime(), -Xlog timenanos)",
        first_read_done as f64 / 1e9,
        last_read_start as f64 / 1e9
    );
    print!("{}", explanation(&set, &features, &eval));
    Ok(())
}

/// The features, each rule's outcome with the values it read, and the profile.
pub fn explanation(set: &RuleSet, features: &Features, eval: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "features over {:.1} s:", features.now.window_s);
    for f in FEATURES {
        if let Some(v) = features.get(f.name) {
            let _ = writeln!(out, "  {:<20} {:<14} {}", f.name, show(&v), f.doc);
        }
    }
    let _ = writeln!(out, "\nrules:");
    for (rule, (_, outcome)) in set.rules.iter().zip(&eval.outcomes) {
        let verdict = match outcome {
            Outcome::Holds => "HOLDS".to_string(),
            Outcome::Fails => "no".to_string(),
            Outcome::NotApplicable => format!(
                "n/a (only for {})",
                rule.runtimes
                    .iter()
                    .map(|r| r.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Outcome::Error(e) => format!("error: {e}"),
        };
        let _ = writeln!(out, "  {:<22} {verdict}", rule.name);
        if *outcome == Outcome::NotApplicable {
            continue;
        }
        let _ = writeln!(out, "      when {}", rule.when.trim());
        let values: Vec<String> = rule
            .reads
            .iter()
            .filter_map(|n| features.get(n).map(|v| format!("{n} = {}", show(&v))))
            .collect();
        let _ = writeln!(out, "      with {}", values.join(", "));
        if let Some(f) = eval.findings.iter().find(|f| f.rule == rule.name) {
            let _ = writeln!(
                out,
                "      {} -> {}: {}",
                f.severity.label(),
                f.profile.as_deref().unwrap_or("(no vote)"),
                f.advice
            );
        }
    }
    let _ = writeln!(out, "\nprofile: {}", eval.candidate);
    out
}

fn show(v: &FeatureValue) -> String {
    match v {
        FeatureValue::Number(n) => rules::engine::format_number(*n),
        FeatureValue::Bool(b) => b.to_string(),
        FeatureValue::Text(t) => format!("{t:?}"),
        FeatureValue::Shares(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k:?}: {}", rules::engine::format_number(*v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::features::WindowStats;

    #[test]
    fn explanation_shows_values_outcomes_and_profile() {
        let set = rules::defaults();
        let features = Features {
            runtime: crate::runtimes::Runtime::HotSpot,
            cpu_limit_cores: 0.0,
            now: WindowStats {
                window_s: 10.0,
                pauses: 900,
                pauses_per_min: 5400.0,
                stall_ratio: 0.21,
                gc_share: 0.9,
                gc_per_min: 5400.0,
                ..Default::default()
            },
            prev: None,
        };
        let eval = rules::evaluate(&set, &features);
        let text = explanation(&set, &features, &eval);
        assert!(text.contains("features over 10.0 s:"), "{text}");
        assert!(text.contains("  stall_ratio          0.21 "), "{text}");
        assert!(text.contains("  gc_overhead            HOLDS"), "{text}");
        assert!(
            text.contains("      with stall_ratio = 0.21, gc_share = 0.9\n"),
            "{text}"
        );
        assert!(
            text.contains("warning -> throughput: throughput-bound: 21%"),
            "{text}"
        );
        assert!(text.contains("  idle                   no"), "{text}");
        assert!(text.ends_with("\nprofile: throughput\n"), "{text}");
        let d = describe(&set);
        assert!(
            d.contains("rule time_to_safepoint (<built-in rules of hotspot>:"),
            "{d}"
        );
        assert!(d.contains("  runtimes: hotspot"), "{d}");
    }
}
