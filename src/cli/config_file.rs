//! `fnlb serve --config fnlb.toml`: every `serve` setting in a TOML file, named as its flag without the dashes
//! (`idle-timeout = 60`). The command line and the environment win over the file, the file over the defaults.
//! Unknown keys and values a flag would refuse are refused at start, naming the file, the key and the reason.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory};

use super::Cli;

/// A setting of the file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigFileError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

/// The `serve` arguments a config file adds: one `--flag value` per key not already given on the command line or
/// in the environment.
pub fn args(path: &Path, serve: &ArgMatches) -> Result<Vec<OsString>, ConfigFileError> {
    let file = path.display().to_string();
    let error = |key: &str, reason: String| ConfigFileError { file: file.clone(), key: key.to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| error("(the file)", e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| error("(the file)", e.message().to_string()))?;
    let command = Cli::command();
    let serve_command = command.find_subcommand("serve").expect("serve is a subcommand");
    let mut added = Vec::new();
    for (key, value) in &table {
        let arg = serve_command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config" && key != "help")
            .ok_or_else(|| error(key, "not a setting of fnlb serve (docs/configuration.md lists them)".to_string()))?;
        if matches!(
            serve.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = OsString::from(format!("--{key}"));
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) if matches!(arg.get_action(), ArgAction::SetTrue) => {
                if *b {
                    added.push(flag);
                }
                continue;
            }
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(error(key, "expected a string, a number or a boolean".to_string())),
        };
        // The flag's own parser checks the value, so a bad one is refused here, by key.
        let probe = Cli::command().try_get_matches_from(["fnlb", "serve", &format!("--{key}"), &text]);
        if let Err(e) = probe {
            let reason = e.to_string();
            let reason = reason.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
            return Err(error(key, reason));
        }
        added.push(flag);
        added.push(OsString::from(text));
    }
    Ok(added)
}
