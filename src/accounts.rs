//! The accounts file (`fnlb serve --accounts FILE`): the accounts fnlb serves besides the one made on its first
//! start, each with its keys, `AppId`, `Uin` and account type. Read at every start: new accounts are added,
//! changed ones updated, and configured accounts no longer in the file disabled (their keys are refused; their
//! resources are kept, and come back if the account does).
//!
//! ```json
//! [{"SecretId": "AKID…", "SecretKey": "…", "AppId": "1250000001", "Uin": "100000000001", "Type": "standard"}]
//! ```

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::control::Control;
use crate::state::{Account, AccountKind, Command};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Entry {
    secret_id: String,
    secret_key: String,
    app_id: String,
    uin: String,
    /// `standard` (bill-by-IP) or `traditional` (bill-by-CVM: may not bind functions to load balancers).
    #[serde(rename = "Type", default)]
    kind: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("cannot read the accounts file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("the accounts file {0} is not a JSON list of accounts: {1}")]
    Parse(String, serde_json::Error),
    #[error("account {uin} in the accounts file: {why}")]
    Invalid { uin: String, why: String },
}

/// Reads the file and makes the state's configured accounts what it says.
pub async fn apply(control: &Control, path: &Path) -> anyhow::Result<usize> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| AccountsError::Read(shown.clone(), e))?;
    let entries: Vec<Entry> = serde_json::from_str(&text).map_err(|e| AccountsError::Parse(shown, e))?;
    let state = control.snapshot().state.clone();
    let mut uins = HashSet::new();
    let mut secret_ids = HashSet::new();
    let mut commands = Vec::new();
    for entry in entries {
        let invalid = |why: &str| AccountsError::Invalid { uin: entry.uin.clone(), why: why.to_string() };
        let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(&entry.uin) || !digits(&entry.app_id) {
            return Err(invalid("Uin and AppId are numbers").into());
        }
        if entry.secret_id.len() < 8 || entry.secret_key.len() < 8 {
            return Err(invalid("SecretId and SecretKey are at least 8 characters").into());
        }
        if !uins.insert(entry.uin.clone()) || !secret_ids.insert(entry.secret_id.clone()) {
            return Err(invalid("a Uin or a SecretId appears twice").into());
        }
        let kind = match entry.kind.as_deref() {
            None | Some("standard") => AccountKind::Standard,
            Some("traditional") => AccountKind::Traditional,
            Some(_) => return Err(invalid("Type is standard or traditional").into()),
        };
        let clash = state.accounts.values().find(|a| a.secret_id == entry.secret_id && a.uin != entry.uin);
        if clash.is_some() {
            return Err(invalid("its SecretId belongs to another account").into());
        }
        let existing = state.accounts.get(&entry.uin);
        if existing.is_some_and(|a| !a.configured) {
            return Err(invalid("it is the account fnlb made on its first start").into());
        }
        let account = Account {
            uin: entry.uin.clone(),
            app_id: entry.app_id,
            secret_id: entry.secret_id,
            secret_key: entry.secret_key,
            kind,
            created_ms: existing.map_or_else(crate::clock::now_ms, |a| a.created_ms),
            configured: true,
            disabled: false,
        };
        if existing != Some(&account) {
            commands.push(Command::PutAccount(account));
        }
    }
    let count = uins.len();
    for gone in state.accounts.values().filter(|a| a.configured && !a.disabled && !uins.contains(&a.uin)) {
        commands.push(Command::PutAccount(Account { disabled: true, ..gone.clone() }));
    }
    if !commands.is_empty() {
        control.apply(Command::Batch(commands), None).await?;
    }
    Ok(count)
}
