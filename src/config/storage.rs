//! The storage section (STORAGE_BACKEND, SQLITE_*, DATABASE_*, DYNAMODB_*, AWS_REGION):
//! which backend the readings live in and how to reach it.

use std::path::PathBuf;

use super::{invalid, ConfigError, Vars};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub enum StorageSettings {
    Sqlite {
        path: PathBuf,
        durability: Durability,
    },
    Postgres {
        /// May hold a password.
        url: Secret<String>,
        max_connections: u32,
    },
    /// Tables are created on start-up when absent (docs/dynamodb.md).
    DynamoDb {
        /// None: the AWS endpoint of `region`.
        endpoint: Option<url::Url>,
        region: String,
        readings_table: String,
        user_tokens_table: String,
        sync_jobs_table: String,
        /// Shares, audit, OAuth states, leases, webhook inbox and outbox.
        aux_table: String,
    },
}

/// How hard a commit is pushed to disk. `Full` (the default) survives power loss;
/// `Normal` survives a crash of the process, which is all WAL needs for that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    #[default]
    Full,
    Normal,
}

pub(super) fn parse(v: &Vars<'_>) -> Result<StorageSettings, ConfigError> {
    let storage =
        match v.get("STORAGE_BACKEND").to_ascii_lowercase().as_str() {
            "sqlite" => StorageSettings::Sqlite {
                path: PathBuf::from(v.get("SQLITE_PATH")),
                durability: match v.get("SQLITE_SYNCHRONOUS").to_ascii_lowercase().as_str() {
                    "full" => Durability::Full,
                    "normal" => Durability::Normal,
                    other => {
                        return Err(invalid(
                            "SQLITE_SYNCHRONOUS",
                            format!("{other:?} is not full or normal"),
                        ))
                    }
                },
            },
            "postgres" => StorageSettings::Postgres {
                url: Secret::new(v.optional("DATABASE_URL").map(str::to_owned).ok_or_else(
                    || invalid("DATABASE_URL", "is required when STORAGE_BACKEND=postgres"),
                )?),
                max_connections: v.number("DATABASE_MAX_CONNECTIONS", 1, 1000)?,
            },
            "dynamodb" => StorageSettings::DynamoDb {
                endpoint: v
                    .optional("DYNAMODB_ENDPOINT")
                    .map(|raw| {
                        url::Url::parse(raw)
                            .ok()
                            .filter(|u| matches!(u.scheme(), "http" | "https"))
                            .ok_or_else(|| {
                                invalid(
                                    "DYNAMODB_ENDPOINT",
                                    format!("{raw:?} is not an http(s) URL"),
                                )
                            })
                    })
                    .transpose()?,
                region: v.get("AWS_REGION").to_owned(),
                readings_table: v.get("DYNAMODB_TABLE").to_owned(),
                user_tokens_table: v.get("DYNAMODB_USER_TOKENS_TABLE").to_owned(),
                sync_jobs_table: v.get("DYNAMODB_SYNC_JOBS_TABLE").to_owned(),
                aux_table: v.get("DYNAMODB_AUX_TABLE").to_owned(),
            },
            other => {
                return Err(invalid(
                    "STORAGE_BACKEND",
                    format!("{other:?} is not sqlite, postgres or dynamodb"),
                ))
            }
        };
    if let Some(url) = v.optional("DATABASE_URL") {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid("DATABASE_URL", "must be a postgres:// URL"));
        }
    }
    Ok(storage)
}
