//! The deployment files agree with the gateway they deploy. Reads `deploy/haproxy/haproxy.cfg`,
//! `deploy/nginx/nginx.conf`, `deploy/k8s/*.yaml`, the `Dockerfile`, `tuning/gateway.service` and
//! `docs/OPERATIONS.md`, and checks their timeouts, probes and ports against the gateway's defaults as
//! written in `gateway.example.toml` (and the Kubernetes ConfigMap's overrides):
//! - every idle timeout a balancer applies to an open WebSocket follows the 80 s rule:
//!   > heartbeat.interval_ms + heartbeat.timeout_ms, with a margin of 5 s;
//! - HAProxy's `/readyz` check takes a draining node out of rotation within shutdown.drain_delay_ms;
//! - every stop timeout (Kubernetes grace period, `docker --stop-timeout`, systemd `TimeoutStopSec`)
//!   covers drain_delay_ms + drain_window_ms + close_grace_ms plus the clean-up bounds;
//! - probes and ports are the gateway's; the metric the HPA scales on exists;
//! - docs/OPERATIONS.md states the same numbers and names only metrics the gateway exports.

mod deploy_parse;

use std::time::Duration;

use deploy_parse::{Defaults, Haproxy, Nginx, lookup, param, repo_file};

/// The margin of the 80 s rule, over heartbeat interval + timeout.
const HEARTBEAT_MARGIN: Duration = Duration::from_secs(5);
/// What may follow the close grace before the process exits: each shard finishes at most 1 s after
/// its close grace, and the bridge's Redis clean-up is bounded by 3 s (docs/ARCHITECTURE.md).
const CLEANUP: Duration = Duration::from_secs(4);
/// A node must leave rotation at least this long before its listeners close.
const ROTATION_MARGIN: Duration = Duration::from_secs(1);

/// The smallest idle timeout a balancer may apply to an open WebSocket (the 80 s rule).
fn heartbeat_rule(cfg: &Effective) -> Duration {
    cfg.ms("heartbeat.interval_ms") + cfg.ms("heartbeat.timeout_ms") + HEARTBEAT_MARGIN
}

/// The smallest stop timeout: the whole drain, the close grace and the clean-up bounds.
fn stop_rule(cfg: &Effective) -> Duration {
    cfg.ms("shutdown.drain_delay_ms")
        + cfg.ms("shutdown.drain_window_ms")
        + cfg.ms("shutdown.close_grace_ms")
        + CLEANUP
}

/// The defaults, optionally overlaid with a configuration file (the Kubernetes ConfigMap).
struct Effective {
    defaults: Defaults,
    file: Option<toml::Table>,
}

impl Effective {
    fn defaults() -> Effective {
        Effective {
            defaults: Defaults::load(),
            file: None,
        }
    }

    fn int(&self, key: &str) -> u64 {
        match self.file.as_ref().and_then(|f| lookup(f, key)) {
            Some(v) => v
                .as_integer()
                .unwrap_or_else(|| panic!("`{key}` is not an integer: {v}"))
                as u64,
            None => self.defaults.int(key),
        }
    }

    fn ms(&self, key: &str) -> Duration {
        Duration::from_millis(self.int(key))
    }

    fn port(&self, key: &str) -> u16 {
        match self.file.as_ref().and_then(|f| lookup(f, key)) {
            Some(v) => {
                let addr = v.as_str().expect("an address string");
                addr.rsplit_once(':').unwrap().1.parse().expect("a port")
            }
            None => self.defaults.port(key),
        }
    }
}

#[test]
fn haproxy_tunnel_timeout_follows_the_heartbeat() {
    let cfg = Effective::defaults();
    let hap = Haproxy::load();
    let rule = heartbeat_rule(&cfg);
    let tunnel = hap
        .timeout("tunnel")
        .expect("haproxy.cfg sets `timeout tunnel`");
    assert!(
        tunnel >= rule,
        "timeout tunnel {tunnel:?} < heartbeat interval + timeout + margin = {rule:?}"
    );
    // The half-closed timeouts must let a close handshake finish.
    for fin in ["client-fin", "server-fin"] {
        if let Some(t) = hap.timeout(fin) {
            assert!(
                t >= cfg.ms("shutdown.close_grace_ms"),
                "timeout {fin} {t:?} < shutdown.close_grace_ms"
            );
        }
    }
    // The request head may not wait longer than the gateway would for its handshake.
    let http_request = hap.timeout("http-request").expect("timeout http-request");
    assert!(http_request <= cfg.ms("websocket.handshake_timeout_ms"));
}

#[test]
fn haproxy_checks_take_a_draining_node_out_within_the_drain_delay() {
    let cfg = Effective::defaults();
    let hap = Haproxy::load();
    let httpchk = hap
        .line("backend", "option httpchk")
        .expect("backend has `option httpchk`");
    assert_eq!(
        httpchk[2..].join(" "),
        "GET /readyz",
        "the check must ask readiness: {httpchk:?}"
    );
    let expect = hap
        .line("backend", "http-check expect")
        .expect("http-check expect");
    assert_eq!(expect[2..].join(" "), "status 200");
    let admin = cfg.port("admin").to_string();
    let listen = cfg.port("listen").to_string();
    let servers = hap.servers();
    assert!(servers.len() >= 2, "at least two nodes: {servers:?}");
    for s in &servers {
        assert!(s.iter().any(|t| t == "check"), "no `check` on {s:?}");
        assert_eq!(
            param(s, "port"),
            Some(admin.as_str()),
            "the check must go to the admin port: {s:?}"
        );
        assert!(
            s[2].ends_with(&format!(":{listen}")),
            "the server address must be the WebSocket port: {s:?}"
        );
        assert!(
            !s.iter().any(|t| t == "on-marked-down"),
            "a DOWN node's tunnels must be left to the gateway's paced 1012 closes: {s:?}"
        );
    }
    assert!(
        hap.line("backend", "default-server")
            .is_some_and(|l| !l.iter().any(|t| t == "on-marked-down")),
        "no on-marked-down on default-server"
    );
    let checks = hap.checks();
    let bound = checks.exit_bound();
    let delay = cfg.ms("shutdown.drain_delay_ms");
    assert!(
        bound + ROTATION_MARGIN <= delay,
        "worst-case rotation exit {bound:?} ({checks:?}) + {ROTATION_MARGIN:?} > drain_delay_ms {delay:?}"
    );
    // Retries on refused connects, redispatched to another node.
    assert!(hap.line("defaults", "option redispatch").is_some());
    assert!(
        hap.line("defaults", "retry-on")
            .is_some_and(|l| l.iter().any(|t| t == "conn-failure"))
    );
}

#[test]
fn nginx_timeouts_follow_the_heartbeat_and_refused_connects_are_retried() {
    let cfg = Effective::defaults();
    let ngx = Nginx::load();
    let rule = heartbeat_rule(&cfg);
    for name in ["proxy_read_timeout", "proxy_send_timeout", "send_timeout"] {
        let t = ngx.duration(name);
        assert!(
            t >= rule,
            "{name} {t:?} < heartbeat interval + timeout + margin = {rule:?}"
        );
    }
    assert!(ngx.duration("client_header_timeout") <= cfg.ms("websocket.handshake_timeout_ms"));
    let next = ngx.get("proxy_next_upstream").expect("proxy_next_upstream");
    for cond in ["error", "timeout"] {
        assert!(
            next.iter().any(|c| c == cond),
            "proxy_next_upstream lacks {cond}: {next:?}"
        );
    }
    assert!(
        ngx.duration("proxy_connect_timeout") < cfg.ms("shutdown.drain_delay_ms"),
        "a node that does not accept must be skipped quickly"
    );
    assert_eq!(
        ngx.get("proxy_http_version").map(|v| v.join(" ")),
        Some("1.1".into())
    );
    let headers: Vec<String> = ngx
        .directives
        .iter()
        .filter(|d| d[0] == "proxy_set_header")
        .map(|d| d[1..].join(" "))
        .collect();
    assert!(headers.contains(&"Upgrade $http_upgrade".to_string()));
    assert!(headers.contains(&"Connection $connection_upgrade".to_string()));
    assert!(
        ngx.get("zone").is_some(),
        "the upstream needs a zone so workers share failure state"
    );
    let listen = cfg.port("listen").to_string();
    let servers = ngx.upstream_servers();
    assert!(servers.len() >= 2, "at least two nodes: {servers:?}");
    for s in servers {
        assert!(
            s[1].ends_with(&format!(":{listen}")),
            "the upstream must be the WebSocket port: {s:?}"
        );
        let max_fails = s
            .iter()
            .find_map(|t| t.strip_prefix("max_fails="))
            .unwrap_or("1");
        assert_ne!(
            max_fails, "0",
            "max_fails=0 turns off the passive check: {s:?}"
        );
        if let Some(ft) = s.iter().find_map(|t| t.strip_prefix("fail_timeout=")) {
            assert!(deploy_parse::nginx_duration(ft) > Duration::ZERO);
        }
    }
}

/// Minimal YAML reading for the manifests (no YAML parser among the dependencies): lines without
/// comments, with their indentation.
fn yaml_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
        .map(|l| (l.len() - l.trim_start().len(), l.trim().to_string()))
        .collect()
}

/// The lines nested under the first line that is exactly `key:` (or `- key:`).
fn yaml_block(lines: &[(usize, String)], key: &str) -> Vec<(usize, String)> {
    let head = format!("{key}:");
    let start = lines
        .iter()
        .position(|(_, l)| *l == head || *l == format!("- {head}"))
        .unwrap_or_else(|| panic!("no `{key}:` block"));
    let indent = lines[start].0;
    lines[start + 1..]
        .iter()
        .take_while(|(i, _)| *i > indent)
        .cloned()
        .collect()
}

/// The scalar value of the first `key: value` among `lines` (quotes removed).
fn yaml_value(lines: &[(usize, String)], key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    lines.iter().find_map(|(_, l)| {
        let l = l.strip_prefix("- ").unwrap_or(l);
        l.strip_prefix(&prefix)
            .map(|v| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
    })
}

/// The ConfigMap's gateway.toml: the literal block after `gateway.toml: |`, dedented.
fn configmap_toml() -> String {
    let text = repo_file("deploy/k8s/configmap.yaml");
    let mut lines = text.lines().skip_while(|l| l.trim() != "gateway.toml: |");
    let head = lines.next().expect("configmap.yaml has `gateway.toml: |`");
    let head_indent = head.len() - head.trim_start().len();
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > head_indent)
        .collect();
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn kubernetes_manifests_match_the_gateway() {
    // The ConfigMap is a valid gateway.toml: it parses, and every key is one of the gateway's (an
    // unknown key stops the node at start-up).
    let defaults = Defaults::load();
    let file: toml::Table =
        toml::from_str(&configmap_toml()).expect("the ConfigMap's gateway.toml");
    for (k, v) in &file {
        match v.as_table() {
            Some(section) => {
                for sk in section.keys() {
                    assert!(
                        lookup(&defaults.0, &format!("{k}.{sk}")).is_some(),
                        "ConfigMap: unknown key {k}.{sk}"
                    );
                }
            }
            None => assert!(defaults.0.contains_key(k), "ConfigMap: unknown key {k}"),
        }
    }
    let cfg = Effective {
        defaults,
        file: Some(file),
    };

    let dep = yaml_lines(&repo_file("deploy/k8s/deployment.yaml"));
    // Named container ports -> numbers.
    let ports = yaml_block(&dep, "ports");
    let mut named = std::collections::HashMap::new();
    let mut last_name = None;
    for (_, l) in &ports {
        let l = l.strip_prefix("- ").unwrap_or(l);
        if let Some(n) = l.strip_prefix("name:") {
            last_name = Some(n.trim().to_string());
        } else if let Some(p) = l.strip_prefix("containerPort:") {
            let port: u16 = p.trim().parse().expect("containerPort");
            named.insert(last_name.take().expect("a name before containerPort"), port);
        }
    }
    assert_eq!(named.get("ws"), Some(&cfg.port("listen")), "{named:?}");
    assert_eq!(named.get("admin"), Some(&cfg.port("admin")), "{named:?}");
    let resolve = |p: &str| -> u16 { p.parse().unwrap_or_else(|_| named[p]) };

    let probe = |name: &str| {
        let block = yaml_block(&dep, name);
        let path = yaml_value(&block, "path").unwrap_or_else(|| panic!("{name}: no path"));
        let port =
            resolve(&yaml_value(&block, "port").unwrap_or_else(|| panic!("{name}: no port")));
        let num = |k: &str, default: u64| {
            yaml_value(&block, k).map_or(default, |v| v.parse().expect("a number"))
        };
        (
            path,
            port,
            num("periodSeconds", 10),
            num("failureThreshold", 3),
            num("timeoutSeconds", 1),
        )
    };
    let admin = cfg.port("admin");
    let (path, port, period, failures, timeout) = probe("readinessProbe");
    assert_eq!((path.as_str(), port), ("/readyz", admin), "readinessProbe");
    let readiness_exit = Duration::from_secs(period * failures + timeout);
    assert!(
        readiness_exit <= cfg.ms("shutdown.drain_delay_ms"),
        "readiness takes up to {readiness_exit:?} to see a drain, beyond drain_delay_ms"
    );
    let (path, port, ..) = probe("livenessProbe");
    assert_eq!(
        (path.as_str(), port),
        ("/healthz", admin),
        "livenessProbe (never /readyz: a draining pod must not be restarted)"
    );
    let (path, port, ..) = probe("startupProbe");
    assert_eq!((path.as_str(), port), ("/healthz", admin), "startupProbe");

    let grace: u64 = yaml_value(&dep, "terminationGracePeriodSeconds")
        .expect("terminationGracePeriodSeconds")
        .parse()
        .unwrap();
    let need = stop_rule(&cfg);
    assert!(
        Duration::from_secs(grace) >= need,
        "terminationGracePeriodSeconds {grace} < drain delay + window + close grace + clean-up = {need:?}"
    );
    assert!(
        !dep.iter().any(|(_, l)| l == "preStop:"),
        "no preStop: SIGTERM starts the drain at once (deployment.yaml explains)"
    );
    assert_eq!(
        yaml_value(&dep, "runAsNonRoot").as_deref(),
        Some("true"),
        "non-root"
    );

    // The Services point at the container's named ports.
    let svc = yaml_lines(&repo_file("deploy/k8s/service.yaml"));
    for (_, l) in &svc {
        if let Some(target) = l.strip_prefix("targetPort:") {
            let target = target.trim();
            assert!(
                named.contains_key(target),
                "Service targetPort {target} is not a container port"
            );
        }
    }

    // The HPA scales on a metric the gateway exports.
    let hpa = yaml_lines(&repo_file("deploy/k8s/hpa.yaml"));
    let metric = yaml_value(&yaml_block(&hpa, "metric"), "name").expect("HPA metric name");
    assert!(
        repo_file("shards/src/metrics.rs").contains(&format!("\"{metric}\"")),
        "the HPA's metric {metric} is not in shards/src/metrics.rs"
    );
    let pdb = yaml_lines(&repo_file("deploy/k8s/pdb.yaml"));
    assert_eq!(yaml_value(&pdb, "maxUnavailable").as_deref(), Some("1"));
}

#[test]
fn docker_and_systemd_stop_timeouts_cover_the_drain() {
    let cfg = Effective::defaults();
    let need = stop_rule(&cfg);
    let docker = repo_file("Dockerfile");
    let directive = |name: &str| -> Vec<String> {
        docker
            .lines()
            .filter(|l| l.starts_with(&format!("{name} ")))
            .map(|l| l[name.len()..].trim().to_string())
            .collect()
    };
    assert_eq!(directive("STOPSIGNAL"), ["SIGTERM"]);
    let exposed: Vec<String> = directive("EXPOSE")
        .iter()
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for port in [cfg.port("listen"), cfg.port("admin")] {
        assert!(
            exposed.contains(&port.to_string()),
            "EXPOSE {exposed:?} lacks {port}"
        );
    }
    let user = directive("USER");
    assert!(
        user.last()
            .is_some_and(|u| !u.starts_with("0") && !u.starts_with("root")),
        "the final image runs as non-root: USER {user:?}"
    );
    let health = directive("HEALTHCHECK").join(" ")
        + docker
            .lines()
            .skip_while(|l| !l.starts_with("HEALTHCHECK"))
            .nth(1)
            .unwrap_or("");
    assert!(
        health.contains("/healthz") && health.contains(&format!("/{}", cfg.port("admin"))),
        "HEALTHCHECK asks liveness on the admin port: {health}"
    );
    // Every `--stop-timeout N` the comments recommend.
    let stop_timeouts: Vec<u64> = docker
        .split("--stop-timeout ")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .expect("--stop-timeout N")
        })
        .collect();
    assert!(
        !stop_timeouts.is_empty(),
        "the Dockerfile recommends --stop-timeout"
    );
    for t in stop_timeouts {
        assert!(
            Duration::from_secs(t) >= need,
            "--stop-timeout {t} < drain delay + window + close grace + clean-up = {need:?}"
        );
    }

    let unit = repo_file("tuning/gateway.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("gateway.service has no {key}="))
            .trim()
            .to_string()
    };
    assert_eq!(value("KillSignal"), "SIGTERM");
    let stop = value("TimeoutStopSec");
    let stop: u64 = stop
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|e| panic!("TimeoutStopSec={stop}: {e}"));
    assert!(
        Duration::from_secs(stop) >= need,
        "TimeoutStopSec={stop} < drain delay + window + close grace + clean-up = {need:?}"
    );
}

#[test]
fn operations_doc_states_the_same_numbers_and_real_metric_names() {
    let doc = repo_file("docs/OPERATIONS.md");
    let defaults = Defaults::load();
    // The table of defaults the document relies on matches gateway.example.toml.
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Defaults this document relies on"))
        .expect("docs/OPERATIONS.md has a section `## Defaults this document relies on`");
    let mut rows = 0;
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let key = cells[1].trim_matches('`');
        let value: u64 = cells[2]
            .parse()
            .unwrap_or_else(|e| panic!("OPERATIONS.md: {line}: {e}"));
        assert_eq!(
            value,
            defaults.int(key),
            "OPERATIONS.md says {key} = {value}, gateway.example.toml says otherwise"
        );
        rows += 1;
    }
    for key in [
        "heartbeat.interval_ms",
        "heartbeat.timeout_ms",
        "shutdown.drain_delay_ms",
        "shutdown.drain_window_ms",
        "shutdown.close_grace_ms",
        "shutdown.reconnect_hint_max_ms",
    ] {
        assert!(
            section.contains(&format!("`{key}`")),
            "OPERATIONS.md's defaults table lacks {key}"
        );
    }
    assert!(rows >= 6);

    // The deploy files' values, as the document quotes them.
    let hap = Haproxy::load();
    let tunnel = hap.timeout("tunnel").unwrap().as_secs();
    let ngx = Nginx::load();
    let read = ngx.duration("proxy_read_timeout").as_secs();
    let dep = yaml_lines(&repo_file("deploy/k8s/deployment.yaml"));
    let grace = yaml_value(&dep, "terminationGracePeriodSeconds").unwrap();
    let checks = hap.checks();
    for quoted in [
        format!("timeout tunnel {tunnel}s"),
        format!("proxy_read_timeout {read}s"),
        format!("terminationGracePeriodSeconds: {grace}"),
        format!("--stop-timeout {grace}"),
        format!(
            "inter {}s fastinter {}ms",
            checks.inter.as_secs(),
            checks.fastinter.as_millis()
        ),
    ] {
        assert!(
            doc.contains(&quoted),
            "OPERATIONS.md does not quote `{quoted}` from the deploy files"
        );
    }

    // Every metric the document names is one the gateway registers.
    let sources = ["src", "shards/src"]
        .iter()
        .flat_map(|dir| rust_sources(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)))
        .collect::<Vec<_>>()
        .join("\n");
    let mut names: Vec<&str> = doc
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("gateway_") && w.len() > "gateway_".len())
        .collect();
    names.sort();
    names.dedup();
    assert!(
        names.len() >= 10,
        "OPERATIONS.md names its metrics: {names:?}"
    );
    for name in names {
        // `gateway_cluster_*` names a family: some metric must start with it.
        let quoted = if name.ends_with('_') {
            format!("\"{name}")
        } else {
            format!("\"{name}\"")
        };
        assert!(
            sources.contains(&quoted),
            "OPERATIONS.md names {name}, which the gateway does not register"
        );
    }
}

/// The text of every `.rs` file under `dir`, recursively (where metrics are registered).
fn rust_sources(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}
