//! `GATEWAY_*` environment overrides: which variable sets which key, and how its text becomes the
//! key's value (the TOML type of the default decides).

use super::{Config, ConfigError, ENV_PREFIX, LOG_ENV, pusher};

impl Config {
    /// Every environment variable name that sets a key, in key order.
    pub fn env_names() -> Vec<String> {
        let table =
            toml::Table::try_from(Config::default()).expect("the default config serializes");
        let mut names: Vec<String> = env_keys(&table).into_iter().map(|k| k.var).collect();
        names.push(pusher::APPS_ENV.to_owned());
        names
    }

    /// Applies the `GATEWAY_*` overrides in `env` (sorted by name, so errors are deterministic).
    pub(super) fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name != LOG_ENV)
            .collect();
        // A list of tables, set from one `id:key:secret,...` value.
        if let Some(at) = vars.iter().position(|(name, _)| name == pusher::APPS_ENV) {
            let (var, raw) = vars.swap_remove(at);
            self.pusher.apps =
                pusher::parse_env(&raw).map_err(|message| ConfigError::Env { var, message })?;
        }
        if vars.is_empty() {
            return Ok(());
        }
        vars.sort();
        let env_err = |var: &str, message: String| ConfigError::Env {
            var: var.to_owned(),
            message,
        };
        let mut table =
            toml::Table::try_from(&*self).map_err(|e| env_err(&vars[0].0, e.to_string()))?;
        let keys = env_keys(&table);
        for (var, raw) in &vars {
            let Some(key) = keys.iter().find(|k| &k.var == var) else {
                let hint = keys
                    .iter()
                    .find(|k| k.var.starts_with(var.as_str()) || var.starts_with(k.var.as_str()))
                    .map(|k| format!(" (did you mean {}?)", k.var))
                    .unwrap_or_default();
                return Err(env_err(var, format!("matches no configuration key{hint}")));
            };
            let slot = match &key.section {
                Some(section) => table
                    .get_mut(section)
                    .and_then(toml::Value::as_table_mut)
                    .and_then(|t| t.get_mut(&key.key)),
                None => table.get_mut(&key.key),
            };
            let slot = slot.expect("env_keys lists only keys of this table");
            *slot = parse_env_value(slot, raw).map_err(|m| env_err(var, m))?;
            // Deserialize after each variable so a type or range error names the variable that caused it.
            *self = table
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| env_err(var, e.message().to_owned()))?;
        }
        Ok(())
    }
}

/// One key that an environment variable can set.
struct EnvKey {
    /// `GATEWAY_S_K` or `GATEWAY_K`.
    var: String,
    /// Section name, `None` for a top-level key.
    section: Option<String>,
    /// Key name within its section (or the top level).
    key: String,
}

/// Every settable key of `table` (a serialized [`Config`]) with its variable name.
fn env_keys(table: &toml::Table) -> Vec<EnvKey> {
    let mut keys = Vec::new();
    for (name, value) in table {
        match value {
            // Lists of tables (`[[channels.namespaces]]`): file only.
            toml::Value::Table(_) if name == "channels" || name == "pusher" => {}
            toml::Value::Array(_) if name == "webhooks" => {}
            toml::Value::Table(section) => keys.extend(section.keys().map(|key| EnvKey {
                var: format!("{ENV_PREFIX}{}_{}", name.to_uppercase(), key.to_uppercase()),
                section: Some(name.clone()),
                key: key.clone(),
            })),
            _ => keys.push(EnvKey {
                var: format!("{ENV_PREFIX}{}", name.to_uppercase()),
                section: None,
                key: name.clone(),
            }),
        }
    }
    keys
}

/// Parses `raw` as a value of the same TOML type as `current`.
fn parse_env_value(current: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    use toml::Value;
    let trimmed = raw.trim();
    match current {
        Value::String(_) => Ok(Value::String(raw.to_owned())),
        Value::Integer(_) => trimmed
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("expected an integer, got {raw:?}")),
        Value::Boolean(_) => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        Value::Float(_) => trimmed
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| format!("expected a number, got {raw:?}")),
        Value::Array(_) => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
        other => Err(format!(
            "a {} cannot be set from the environment",
            other.type_str()
        )),
    }
}
