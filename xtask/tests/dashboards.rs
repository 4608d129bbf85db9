//! The Grafana dashboard and the Prometheus rules against real components.
//!
//! 1. `dashboards/grafana/pausewatch.json` is well formed: every panel has a
//!    unique id, a datasource and targets with `refId` and `expr`; the
//!    template variables `datasource`, `runtime`, `comm` and `pid` exist.
//! 2. `promtool` accepts a generated config, `dashboards/prometheus/rules.yml`
//!    and `prometheus.example.yml`, and passes `rules_test.yml`.
//! 3. A GcHeavy JVM, the release agent tracing it and a real Prometheus
//!    server (scraping every second, evaluating `rules.yml` every second):
//!    every panel expression of the dashboard (template variables replaced)
//!    and every recording rule returns a non-empty result, every rule is
//!    healthy, and the recorded series exist. A panel that queries a metric
//!    or label the agent does not export fails here.
//!
//! Needs the Debian package `prometheus` (`cargo xtask test` installs it).
//! The end-to-end test needs root (BPF); without root it fails and says
//! so, since a skipped test would hide a broken CI set-up. Agent: `$PAUSEWATCH_AGENT`, else `target/release/agent`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::child::Process;
use support::prometheus::{self, Prometheus};
use support::{ScratchDir, agent_binary, free_port, require_root, workspace_root};
use xtask::workloads::{JavaWorkload, RunningJava, find_java};

fn dashboard_path() -> PathBuf {
    workspace_root().join("dashboards/grafana/pausewatch.json")
}

fn rules_path() -> PathBuf {
    workspace_root().join("dashboards/prometheus/rules.yml")
}

fn load_dashboard() -> Value {
    let path = dashboard_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every (panel title, refId, expr) of the dashboard, nested row panels
/// included.
fn panel_queries(dash: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for panel in all_panels(dash) {
        let title = panel["title"].as_str().unwrap_or("").to_string();
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                title.clone(),
                t["refId"].as_str().unwrap_or("").to_string(),
                t["expr"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

/// The histogram families the agent exports (classic `_bucket`, `_sum`,
/// `_count` series in the text format, one native series each in the
/// protobuf format).
const HISTOGRAM_FAMILIES: [&str; 4] = [
    "pausewatch_pause_seconds",
    "pausewatch_time_to_safepoint_seconds",
    "pausewatch_vm_operation_seconds",
    "pausewatch_gc_concurrent_cycle_seconds",
];

/// Whether `expr` reads a native histogram series (a histogram family's
/// bare name), which only a Prometheus with native histograms on has.
fn queries_native_series(expr: &str) -> bool {
    HISTOGRAM_FAMILIES
        .iter()
        .any(|f| expr.contains(&format!("{f}{{")) || expr.contains(&format!("{f}[")))
}

fn all_panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

#[test]
fn dashboard_json_is_well_formed() {
    let dash = load_dashboard();
    assert!(
        dash["schemaVersion"].as_u64().unwrap_or(0) >= 39,
        "schemaVersion"
    );
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()), "uid");
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));

    let vars: BTreeMap<&str, &Value> = dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().expect("variable name"), v))
        .collect();
    let ds = vars.get("datasource").expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["runtime", "comm", "pid"] {
        let v = vars
            .get(name)
            .unwrap_or_else(|| panic!("no ${name} variable"));
        assert_eq!(v["type"], "query", "${name}");
        assert_eq!(v["multi"], true, "${name} multi");
        assert_eq!(v["includeAll"], true, "${name} includeAll");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "${name}");
        let def = v["definition"].as_str().unwrap_or("");
        assert!(
            def.starts_with("label_values(pausewatch_target_info")
                && def.ends_with(&format!(", {name})")),
            "${name}: {def}"
        );
    }

    let panels = all_panels(&dash);
    assert!(panels.len() >= 8, "only {} panels", panels.len());
    let mut ids = BTreeSet::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?");
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title:?} has no id"));
        assert!(ids.insert(id), "panel id {id} ({title:?}) is not unique");
        assert!(p["gridPos"].is_object(), "{title}: gridPos");
        assert_eq!(p["datasource"]["type"], "prometheus", "{title}: datasource");
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: datasource"
        );
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            let r = t["refId"].as_str().unwrap_or("");
            assert!(!r.is_empty() && refs.insert(r), "{title}: refId {r:?}");
            let expr = t["expr"].as_str().unwrap_or("");
            assert!(expr.contains("pausewatch_"), "{title}/{r}: expr {expr:?}");
        }
        if p["type"] == "heatmap" {
            assert_eq!(targets[0]["format"], "heatmap", "{title}");
        }
    }
    // Native-histogram heatmaps for the pause and time-to-safepoint
    // families.
    for family in [
        "pausewatch_pause_seconds{",
        "pausewatch_time_to_safepoint_seconds{",
    ] {
        assert!(
            panels.iter().any(|p| p["type"] == "heatmap"
                && p["targets"][0]["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains(family) && queries_native_series(e))),
            "no native heatmap on {family}"
        );
    }
    // HotSpot's gc pauses run inside its safepoints: a query summing pause
    // time must select kind="safepoint" for hotspot, never both kinds.
    for (title, r, expr) in panel_queries(&dash) {
        if expr.contains("pausewatch_pause_seconds_sum") {
            assert!(expr.contains(r#"kind="safepoint""#), "{title}/{r}: {expr}");
        }
    }
}

#[test]
fn promtool_accepts_config_and_rules() {
    let promtool = prometheus::tool("promtool");
    let tmp = ScratchDir::new("dash-promtool");
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(&config, prometheus::config(9464, Some(&rules_path()))).unwrap();
    let example = workspace_root().join("dashboards/prometheus/prometheus.example.yml");
    let cases: [(&[&str], PathBuf); 4] = [
        (&["check", "config"], config),
        (&["check", "config"], example),
        (&["check", "rules"], rules_path()),
        (
            &["test", "rules"],
            workspace_root().join("dashboards/prometheus/rules_test.yml"),
        ),
    ];
    for (args, file) in cases {
        // rules_test.yml names rules.yml relative to itself.
        let out = Command::new(&promtool)
            .args(args)
            .arg(&file)
            .current_dir(file.parent().unwrap())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "running {}: {e}; {}",
                    promtool.display(),
                    prometheus::INSTALL_HINT
                )
            });
        assert!(
            out.status.success(),
            "promtool {} {} failed:\n{}{}",
            args.join(" "),
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every `expr:` of a `record:` rule in rules.yml, with its name. A small
/// reader for the layout rules.yml uses (block scalars `expr: |` or one-line
/// expressions), so that no YAML crate is needed.
fn recording_rules(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        i += 1;
        let Some(name) = line.strip_prefix("- record:") else {
            continue;
        };
        let name = name.trim().to_string();
        // The expr follows the record line.
        while i < lines.len() && !lines[i].trim_start().starts_with("expr:") {
            i += 1;
        }
        let expr_line = lines.get(i).expect("record without expr").trim_start();
        let indent = lines[i].len() - expr_line.len();
        i += 1;
        let inline = expr_line["expr:".len()..].trim();
        let expr = if inline == "|" || inline == ">" || inline == "|-" {
            let mut body = Vec::new();
            while i < lines.len() {
                let l = lines[i];
                let ind = l.len() - l.trim_start().len();
                if !l.trim().is_empty() && ind <= indent {
                    break;
                }
                body.push(l.trim());
                i += 1;
            }
            body.join(" ")
        } else {
            inline.to_string()
        };
        out.push((name, expr));
    }
    out
}

// ---- the end-to-end part ----

/// Starts the agent on `pid` and waits for "armed in" on its stderr.
/// Stopped with SIGINT when dropped.
fn start_agent(pid: u32, port: u16) -> Process {
    let mut agent = Process::spawn(
        "the agent",
        Command::new(agent_binary())
            .args(["run", "--pid", &pid.to_string(), "--summary", "0"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .stop_with(libc::SIGINT);
    agent.wait_stderr("armed in", Duration::from_secs(20));
    agent
}

/// A panel expression with Grafana's variables replaced: the rate windows by
/// 30 s, the template variables by `vars`. Panics on a variable it does not
/// know.
fn substitute(expr: &str, vars: &[(&str, String)]) -> String {
    let mut e = expr
        .replace("$__rate_interval", "30s")
        .replace("${__rate_interval}", "30s")
        .replace("$__interval", "5s")
        .replace("${__interval}", "5s")
        .replace("$__range", "60s")
        .replace("${__range}", "60s");
    // Longest names first, so that $pid does not eat part of $pidx.
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    for (name, value) in &vars {
        e = e.replace(&format!("${{{name}}}"), value);
        e = e.replace(&format!("${name}"), value);
    }
    assert!(
        !e.contains('$'),
        "unknown Grafana variable left in {expr:?} -> {e:?}"
    );
    e
}

fn start_jvm() -> RunningJava {
    let java = find_java(17)
        .or_else(|_| find_java(25))
        .unwrap_or_else(|e| panic!("{e:#}"));
    // Runs until dropped: young GCs (~14/s), a thread dump every 100 ms and
    // a full GC every 5 s, so several causes and VM operations show up.
    let mut jvm = JavaWorkload::new(java)
        .duration_secs(0)
        .stack_traces_every_ms(100)
        .system_gc_every_ms(5000)
        .gate(true)
        .spawn()
        .unwrap();
    jvm.wait_ready(Duration::from_secs(60)).unwrap();
    jvm
}

#[test]
fn every_panel_and_rule_returns_data_from_a_real_prometheus() {
    require_root("every_panel_and_rule_returns_data_from_a_real_prometheus");
    let started = Instant::now();
    // Fail fast, before starting anything, if Prometheus is missing.
    prometheus::binary();
    let dash = load_dashboard();
    let rules = recording_rules(&std::fs::read_to_string(rules_path()).unwrap());
    assert!(rules.len() >= 3, "recording rules: {rules:?}");

    let tmp = ScratchDir::new("dash-e2e");
    let mut jvm = start_jvm();
    let agent_port = free_port();
    let mut agent = start_agent(jvm.pid(), agent_port);
    jvm.open_gate().unwrap();
    jvm.wait_started(Duration::from_secs(20)).unwrap();
    let rules_file = rules_path();
    let mut prom = Prometheus::start_with_rules(tmp.path(), agent_port, Some(&rules_file), &[]);
    // The panels on native histograms, against a Prometheus that scrapes
    // them (2.42 then keeps only the native version of each histogram, so
    // the classic panels stay on the first one).
    let mut native = Prometheus::start_with_rules(
        &tmp.path().join("native"),
        agent_port,
        Some(&rules_file),
        &["--enable-feature=native-histograms"],
    );

    let result = run_checks(
        &dash,
        &rules,
        jvm.pid(),
        agent_port,
        &mut agent,
        (&mut prom, &mut native),
    );
    if let Err(e) = &result {
        for p in [&prom, &native] {
            eprintln!(
                "prometheus log of {} (last lines):\n{}",
                p.log.display(),
                p.log_tail()
            );
        }
        eprintln!("agent stderr:\n{}", agent.stderr_text());
        eprintln!("JVM stderr: {}", jvm.stderr_text());
        // Drop order: Prometheus, agent, JVM, then the directory.
        drop(prom);
        drop(native);
        drop(agent);
        drop(jvm);
        panic!("{e}");
    }
    drop(prom);
    drop(native);
    drop(agent);
    let _ = jvm.stop();
    drop(jvm);
    eprintln!(
        "dashboards e2e took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn run_checks(
    dash: &Value,
    rules: &[(String, String)],
    pid: u32,
    agent_port: u16,
    agent: &mut Process,
    (prom, native): (&mut Prometheus, &mut Prometheus),
) -> Result<(), String> {
    // The agent serves our JVM.
    let (status, body) =
        prometheus::http_get(agent_port, "/metrics").map_err(|e| format!("agent /metrics: {e}"))?;
    if status != 200 || !body.contains(&format!("pid=\"{pid}\"")) {
        return Err(format!(
            "agent /metrics: HTTP {status}, no pid {pid}:\n{body}"
        ));
    }

    // Prometheus is up and scraping the agent.
    let t0 = Instant::now();
    for p in [&mut *prom, &mut *native] {
        p.poll(
            r#"up{job="pausewatch"} == 1"#,
            Duration::from_secs(30),
            &mut [&mut *agent],
            |r| !r.is_empty(),
        )?;
    }
    eprintln!(
        "prometheus scraping after {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // ~20 s of samples, so that 30 s rate windows hold enough points and
    // every 1 s rule evaluation has produced its series.
    prom.poll(
        r#"count_over_time(pausewatch_targets{job="pausewatch"}[1m])"#,
        Duration::from_secs(45),
        &mut [&mut *agent],
        |r| r.first().map(prometheus::value).is_some_and(|n| n >= 20.0),
    )?;
    eprintln!("20 scrapes after {:.1} s", t0.elapsed().as_secs_f64());

    // The label values the dashboard's variables would offer.
    let info = prom.query(&format!(r#"pausewatch_target_info{{pid="{pid}"}}"#))?;
    let labels = &info
        .first()
        .ok_or_else(|| format!("no pausewatch_target_info for pid {pid}"))?["metric"];
    let label = |n: &str| labels[n].as_str().unwrap_or("").to_string();
    let concrete = vec![
        ("datasource", "prometheus".to_string()),
        ("instance", label("instance")),
        ("runtime", label("runtime")),
        ("comm", label("comm")),
        ("pid", label("pid")),
    ];
    let all = vec![
        ("datasource", "prometheus".to_string()),
        ("instance", ".*".to_string()),
        ("runtime", ".*".to_string()),
        ("comm", ".*".to_string()),
        ("pid", ".*".to_string()),
    ];

    let mut failures = Vec::new();
    let mut n = 0;
    for (title, r, expr) in panel_queries(dash) {
        for vars in [&concrete, &all] {
            let q = substitute(&expr, vars);
            n += 1;
            let server = if queries_native_series(&q) {
                &*native
            } else {
                &*prom
            };
            match server.query(&q) {
                Ok(res) if !res.is_empty() => {}
                Ok(_) => failures.push(format!("panel {title:?} {r}: empty result for {q}")),
                Err(e) => failures.push(format!("panel {title:?} {r}: {e}")),
            }
        }
    }
    // The template variables' own queries (label_values(metric, label) is
    // Grafana's; ask Prometheus for the metric).
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let def = v["definition"].as_str().unwrap_or("");
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|d| d.rsplit_once(','))
            .map(|(m, _)| m.to_string())
            .unwrap_or_else(|| def.to_string());
        let q = substitute(&inner, &concrete);
        n += 1;
        match prom.query(&q) {
            Ok(res) if !res.is_empty() => {}
            Ok(_) => failures.push(format!("variable {}: empty result for {q}", v["name"])),
            Err(e) => failures.push(format!("variable {}: {e}", v["name"])),
        }
    }
    for (name, expr) in rules {
        for q in [expr.clone(), name.clone()] {
            n += 1;
            match prom.query(&q) {
                Ok(res) if !res.is_empty() => {}
                Ok(_) => failures.push(format!("rule {name}: empty result for {q}")),
                Err(e) => failures.push(format!("rule {name}: {e}")),
            }
        }
    }

    // Every rule, alerts included, evaluates without error.
    let (_, body) = prom
        .get("/api/v1/rules")
        .map_err(|e| format!("/api/v1/rules: {e}"))?;
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("/api/v1/rules: {e}: {body}"))?;
    let mut rule_count = 0;
    for g in v["data"]["groups"].as_array().into_iter().flatten() {
        for r in g["rules"].as_array().into_iter().flatten() {
            rule_count += 1;
            if r["health"] != "ok" {
                failures.push(format!(
                    "rule {} is {}: {}",
                    r["name"], r["health"], r["lastError"]
                ));
            }
        }
    }
    if rule_count < rules.len() + 5 {
        failures.push(format!("Prometheus loaded only {rule_count} rules: {body}"));
    }

    eprintln!(
        "{n} queries, {rule_count} rules checked, {} failures, {:.1} s after Prometheus scraped",
        failures.len(),
        t0.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

#[test]
fn rules_reader_finds_every_recording_rule() {
    let text = std::fs::read_to_string(rules_path()).unwrap();
    let rules = recording_rules(&text);
    let records = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- record:"))
        .count();
    assert_eq!(rules.len(), records);
    for (name, expr) in &rules {
        assert!(name.starts_with("pausewatch:"), "{name}");
        assert!(expr.contains("pausewatch"), "{name}: {expr:?}");
        assert!(
            !expr.contains("- record:") && !expr.contains("alert:"),
            "{name}: {expr:?}"
        );
    }
    for name in [
        "pausewatch:stall_ratio:rate1m",
        "pausewatch:pause_p99_seconds:rate5m",
        "pausewatch:time_to_safepoint_share:rate5m",
    ] {
        assert!(rules.iter().any(|(n, _)| n == name), "{name} missing");
    }
}
