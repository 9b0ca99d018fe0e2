//! `prognos users`: add, list, change passwords of and remove API users in the
//! store of `--data-dir`. Like `prognos models`, it opens the store directly, so
//! run it while `prognos run` is stopped (sled is single-process). Every change
//! is written to the audit log with actor `cli`.

use crate::auth::{AuditLog, Role, UserStore, generate_password};
use crate::cli::{ConfigArg, DataDirArg};
use crate::settings;
use crate::training::registry::Registry;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::BufRead;

/// Arguments of `prognos users`.
#[derive(Debug, Args)]
pub struct UsersArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// What to do.
    #[command(subcommand)]
    pub action: UsersAction,
}

/// `prognos users` actions.
#[derive(Debug, Subcommand)]
pub enum UsersAction {
    /// Create a user. The password is read from the first line of stdin with
    /// --password-stdin, else generated and printed once.
    Add {
        /// Login name (letters, digits, . _ - @).
        username: String,
        /// operator, admin or super_admin.
        #[arg(long)]
        role: Role,
        /// The user's organization (required for operator and admin; must be configured).
        #[arg(long)]
        org: Option<String>,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Configuration whose organizations --org is checked against.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List users (never their hashes).
    List,
    /// Set a user's password (tokens issued before stop working). Read from
    /// stdin with --password-stdin, else generated and printed once.
    Passwd {
        /// Login name.
        username: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user (their tokens stop working).
    Remove {
        /// Login name.
        username: String,
    },
}

impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &Role::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        Ok((p, false))
    } else {
        Ok((generate_password(20), true))
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Run `prognos users`.
pub fn run(args: UsersArgs) -> anyhow::Result<()> {
    let dir = &args.data_dir.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let store_dir = dir.join("store");
    let reg = Registry::open(&store_dir).with_context(|| {
        format!(
            "cannot open the store in {} (stop `prognos run` first: the store is single-process)",
            store_dir.display()
        )
    })?;
    let db = reg.db();
    let users = UserStore::open(&db)?;
    let audit = AuditLog::open(&db)?;
    let record = |action: &str, org: Option<&str>, detail: serde_json::Value| {
        audit.record(now_ms(), "cli", "cli", org, action, "ok", detail)
    };
    match args.action {
        UsersAction::Add {
            username,
            role,
            org,
            password_stdin,
            config,
        } => {
            if let Some(o) = &org {
                let loaded = settings::load(config.config.as_deref())?;
                anyhow::ensure!(
                    loaded.config.orgs.contains_key(o),
                    "organization `{o}` is not in the configuration ({})",
                    loaded.origin
                );
            }
            let (pw, generated) = password(password_stdin)?;
            let u = users.add(&username, role, org.as_deref(), &pw, now_ms())?;
            record(
                "users.add",
                u.org.as_deref(),
                serde_json::json!({"username": u.username, "role": u.role}),
            )?;
            println!(
                "added {} ({}{})",
                u.username,
                u.role,
                u.org
                    .as_deref()
                    .map(|o| format!(", org {o}"))
                    .unwrap_or_default()
            );
            if generated {
                println!("password: {pw}");
            }
        }
        UsersAction::List => {
            for u in users.list()? {
                println!(
                    "{}\t{}\t{}\tcreated={}\tpassword_changed={}",
                    u.username,
                    u.role,
                    u.org.as_deref().unwrap_or("-"),
                    prognos_dataflows::time::format_rfc3339_ms(u.created_at),
                    prognos_dataflows::time::format_rfc3339_ms(u.password_changed_at),
                );
            }
        }
        UsersAction::Passwd {
            username,
            password_stdin,
        } => {
            let (pw, generated) = password(password_stdin)?;
            let u = users.set_password(&username, &pw, now_ms())?;
            record(
                "users.passwd",
                u.org.as_deref(),
                serde_json::json!({"username": u.username}),
            )?;
            println!(
                "password of {} changed; older tokens no longer work",
                u.username
            );
            if generated {
                println!("password: {pw}");
            }
        }
        UsersAction::Remove { username } => {
            let org = users.get(&username)?.and_then(|u| u.org);
            anyhow::ensure!(users.remove(&username)?, "no user {username}");
            record(
                "users.remove",
                org.as_deref(),
                serde_json::json!({"username": username}),
            )?;
            println!("removed {username}");
        }
    }
    db.flush()?;
    Ok(())
}
