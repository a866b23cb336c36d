//! Reading the deployment files under `deploy/` (HAProxy, nginx) and the gateway's defaults
//! (`gateway.example.toml`) for `tests/deploy_config.rs` and `tests/load_balancers.rs`: just enough
//! of each syntax to find the directives those tests check, with durations in each tool's own units.
#![allow(dead_code)]

use std::time::Duration;

/// The text of a file of this repository (`rel` from the workspace root); panics if missing.
pub fn repo_file(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Replaces the single occurrence of `from` in the configuration lines of `text` (comment lines,
/// starting with `#`, are left alone); panics if it occurs 0 or several times, so a changed deploy
/// file breaks the test that renders it instead of silently running something else.
pub fn replace_once(text: &str, from: &str, to: &str, what: &str) -> String {
    let is_config = |l: &str| !l.trim_start().starts_with('#');
    let n: usize = text
        .split_inclusive('\n')
        .filter(|l| is_config(l))
        .map(|l| l.matches(from).count())
        .sum();
    assert_eq!(
        n, 1,
        "{what}: expected `{from}` exactly once in the deploy file's configuration lines, found it \
         {n} times"
    );
    text.split_inclusive('\n')
        .map(|l| {
            if is_config(l) {
                l.replacen(from, to, 1)
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// The gateway's built-in defaults, from `gateway.example.toml` (which is the default configuration
/// as a file).
pub struct Defaults(pub toml::Table);

impl Defaults {
    pub fn load() -> Defaults {
        let text = repo_file("gateway.example.toml");
        Defaults(toml::from_str(&text).expect("gateway.example.toml parses"))
    }

    /// An integer key, `"section.key"` or a top-level `"key"`.
    pub fn int(&self, key: &str) -> u64 {
        lookup(&self.0, key)
            .and_then(toml::Value::as_integer)
            .unwrap_or_else(|| panic!("gateway.example.toml has no integer `{key}`")) as u64
    }

    /// A millisecond key as a duration.
    pub fn ms(&self, key: &str) -> Duration {
        Duration::from_millis(self.int(key))
    }

    /// A string key.
    pub fn str(&self, key: &str) -> String {
        lookup(&self.0, key)
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("gateway.example.toml has no string `{key}`"))
            .to_string()
    }

    /// The port of an `ip:port` key (`listen`, `admin`).
    pub fn port(&self, key: &str) -> u16 {
        let addr = self.str(key);
        addr.rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("`{key}` = {addr:?} has no port"))
    }
}

/// `"section.key"` or `"key"` in `table`.
pub fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    match key.split_once('.') {
        Some((section, k)) => table.get(section)?.as_table()?.get(k),
        None => table.get(key),
    }
}

/// A duration in HAProxy's syntax: a number with an optional unit (us, ms, s, m, h, d; none: ms).
pub fn haproxy_duration(s: &str) -> Duration {
    duration(s, "ms")
}

/// A duration in nginx's syntax: a number with an optional unit (ms, s, m, h, d; none: s).
pub fn nginx_duration(s: &str) -> Duration {
    duration(s, "s")
}

fn duration(s: &str, default_unit: &str) -> Duration {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .unwrap_or_else(|e| panic!("duration {s:?}: {e}"));
    let unit = if unit.is_empty() { default_unit } else { unit };
    match unit {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        other => panic!("duration {s:?}: unknown unit {other:?}"),
    }
}

/// The lines of a config file without comments (`#` to the end of the line), split into tokens.
fn token_lines(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The value after `key` in `tokens` (`inter 1s` -> "1s").
pub fn param<'a>(tokens: &'a [String], key: &str) -> Option<&'a str> {
    let i = tokens.iter().position(|t| t == key)?;
    tokens.get(i + 1).map(String::as_str)
}

/// `deploy/haproxy/haproxy.cfg`, by section.
pub struct Haproxy {
    /// (section header tokens, its directive lines).
    pub sections: Vec<(Vec<String>, Vec<Vec<String>>)>,
}

/// The settings that decide how fast a node whose /readyz turned 503 leaves rotation.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    pub inter: Duration,
    pub fastinter: Duration,
    pub fall: u32,
    pub rise: u32,
    pub timeout: Duration,
}

impl Checks {
    /// Worst case from the 503 to the node marked DOWN: the next check starts within `inter`, the
    /// `fall - 1` after the first failure run every `fastinter`, and each takes at most `timeout check`.
    pub fn exit_bound(&self) -> Duration {
        self.inter + self.fastinter * (self.fall - 1) + self.timeout * self.fall
    }
}

impl Haproxy {
    pub fn parse(text: &str) -> Haproxy {
        const HEADERS: [&str; 5] = ["global", "defaults", "frontend", "backend", "listen"];
        let mut sections: Vec<(Vec<String>, Vec<Vec<String>>)> = Vec::new();
        for line in token_lines(text) {
            if HEADERS.contains(&line[0].as_str()) {
                sections.push((line, Vec::new()));
            } else {
                let (_, lines) = sections
                    .last_mut()
                    .unwrap_or_else(|| panic!("haproxy.cfg: {line:?} before any section"));
                lines.push(line);
            }
        }
        Haproxy { sections }
    }

    pub fn load() -> Haproxy {
        Haproxy::parse(&repo_file("deploy/haproxy/haproxy.cfg"))
    }

    /// The lines of the first section whose header starts with `header` (e.g. "backend").
    pub fn section(&self, header: &str) -> &[Vec<String>] {
        let want: Vec<&str> = header.split_whitespace().collect();
        self.sections
            .iter()
            .find(|(h, _)| h.iter().zip(&want).all(|(a, b)| a == b) && h.len() >= want.len())
            .map(|(_, lines)| lines.as_slice())
            .unwrap_or_else(|| panic!("haproxy.cfg has no `{header}` section"))
    }

    /// The first line of `section` starting with the words of `directive`.
    pub fn line(&self, section: &str, directive: &str) -> Option<&Vec<String>> {
        let want: Vec<&str> = directive.split_whitespace().collect();
        self.section(section)
            .iter()
            .find(|l| l.len() >= want.len() && l.iter().zip(&want).all(|(a, b)| a == b))
    }

    /// `timeout <name>` of the backend, else of `defaults`.
    pub fn timeout(&self, name: &str) -> Option<Duration> {
        let directive = format!("timeout {name}");
        ["backend", "defaults"].iter().find_map(|s| {
            self.line(s, &directive)
                .and_then(|l| l.get(2))
                .map(|v| haproxy_duration(v))
        })
    }

    /// The backend's `server` lines.
    pub fn servers(&self) -> Vec<&Vec<String>> {
        self.section("backend")
            .iter()
            .filter(|l| l[0] == "server")
            .collect()
    }

    /// A check setting from the backend's `default-server` line, overridden by `server` lines if
    /// they all set it (they do not in the deploy file).
    pub fn checks(&self) -> Checks {
        let ds = self
            .line("backend", "default-server")
            .expect("backend has a default-server line");
        let get = |k: &str| param(ds, k);
        let inter = get("inter").map_or(Duration::from_secs(2), haproxy_duration);
        Checks {
            inter,
            fastinter: get("fastinter").map_or(inter, haproxy_duration),
            fall: get("fall").map_or(3, |v| v.parse().expect("fall")),
            rise: get("rise").map_or(2, |v| v.parse().expect("rise")),
            // Without `timeout check`, HAProxy bounds a check by `inter`.
            timeout: self.timeout("check").unwrap_or(inter),
        }
    }
}

/// `deploy/nginx/nginx.conf`: its directives in file order, blocks flattened (the deploy file has one
/// of each that the tests check).
pub struct Nginx {
    pub directives: Vec<Vec<String>>,
}

impl Nginx {
    pub fn parse(text: &str) -> Nginx {
        let mut directives = Vec::new();
        for line in token_lines(text) {
            let joined = line.join(" ");
            for stmt in joined.split(';') {
                let stmt = stmt
                    .trim()
                    .trim_end_matches('{')
                    .trim_start_matches('}')
                    .trim();
                if !stmt.is_empty() {
                    directives.push(stmt.split_whitespace().map(str::to_string).collect());
                }
            }
        }
        Nginx { directives }
    }

    pub fn load() -> Nginx {
        Nginx::parse(&repo_file("deploy/nginx/nginx.conf"))
    }

    /// The arguments of the first directive `name`.
    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.directives
            .iter()
            .find(|d| d[0] == name)
            .map(|d| &d[1..])
    }

    /// The duration of directive `name`; panics if absent.
    pub fn duration(&self, name: &str) -> Duration {
        let args = self
            .get(name)
            .unwrap_or_else(|| panic!("nginx.conf has no `{name}`"));
        nginx_duration(&args[0])
    }

    /// The upstream's `server` lines (in the upstream block: `server <addr> ...`, not the `server {`
    /// block, which has no arguments).
    pub fn upstream_servers(&self) -> Vec<&Vec<String>> {
        self.directives
            .iter()
            .filter(|d| d[0] == "server" && d.len() > 1)
            .collect()
    }
}
