//! Reads samples back out of the Prometheus text exposition that the recorder renders.
//!
//! The shards record their figures through the `metrics` facade only (an uncontended atomic per
//! update, no other bookkeeping on the hot path), and the recorder offers no way to read one value
//! back except rendering everything as text. The dashboard polls once a second, so parsing that text
//! costs nothing worth a second set of counters in the data plane. Only what the recorder writes is
//! understood: `name{label="value",...} number` lines, comments skipped.

/// One sample line: metric name, raw label text (between the braces) and value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    /// Metric name.
    pub name: &'a str,
    /// The label text without braces: `shard="0",path="local"` (empty without labels).
    labels: &'a str,
    /// Sample value.
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `key`, unescaped; `None` when the sample has no such label.
    pub fn label(&self, key: &str) -> Option<String> {
        let mut rest = self.labels;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            let (k, after) = rest.split_once("=\"")?;
            let (value, tail) = quoted(after)?;
            if k.trim() == key {
                return Some(value);
            }
            rest = tail;
        }
    }
}

/// The samples of `text`; lines that do not parse are skipped.
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(parse_line)
}

/// Parses one `name{labels} value` or `name value` line.
fn parse_line(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find(['{', ' ']) {
        Some(i) if line.as_bytes()[i] == b'{' => {
            let end = labels_end(&line[i + 1..])? + i + 1;
            (&line[..i], &line[i + 1..end], &line[end + 1..])
        }
        Some(i) => (&line[..i], "", &line[i..]),
        None => return None,
    };
    // A timestamp may follow the value; the recorder writes none, but it would be harmless.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Index of the `}` closing a label set in `s` (which starts after the `{`), skipping quoted values.
fn labels_end(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// Splits `s` (just after an opening quote) into the unescaped value and what follows its closing quote.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_and_values() {
        let text = "# TYPE gateway_connections_open gauge\n\
                    gateway_connections_open{shard=\"0\"} 3\n\
                    gateway_messages_routed_total{shard=\"1\",path=\"cross_shard\"} 12\n\
                    odd{a=\"x\\\"}\\\\\",b=\"y\\nz\"} 1.5e3\n\
                    gateway_shards 2\n\
                    \n\
                    broken{shard=\"0\" 1\n\
                    not_a_number{} NaNx\n";
        let all: Vec<_> = samples(text).collect();
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(all[0].name, "gateway_connections_open");
        assert_eq!(all[0].label("shard").as_deref(), Some("0"));
        assert_eq!(all[0].value, 3.0);
        assert_eq!(all[1].label("path").as_deref(), Some("cross_shard"));
        assert_eq!(all[1].label("shard").as_deref(), Some("1"));
        assert_eq!(all[1].label("reason"), None);
        assert_eq!(all[2].label("a").as_deref(), Some("x\"}\\"));
        assert_eq!(all[2].label("b").as_deref(), Some("y\nz"));
        assert_eq!(all[2].value, 1500.0);
        assert_eq!((all[3].name, all[3].value), ("gateway_shards", 2.0));
        assert_eq!(all[3].label("shard"), None);
    }
}
