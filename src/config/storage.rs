//! The storage section (STORAGE_BACKEND, SQLITE_*, DATABASE_*, DYNAMODB_*, AWS_*):
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
        /// None: the AWS default credential chain. Boxed: the variant is
        /// large enough already.
        credentials: Option<Box<AwsCredentials>>,
    },
}

/// Fixed AWS credentials for DynamoDB (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
/// AWS_SESSION_TOKEN): an emulator's, or keys an operator sets rather than a role.
#[derive(Debug, Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret<String>,
    /// Temporary credentials (STS) come with one.
    pub session_token: Option<Secret<String>>,
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
                credentials: aws_credentials(v)?,
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

/// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, both or neither; AWS_SESSION_TOKEN
/// only with them. The AWS default chain reads the same variables from the
/// environment, so the session token must travel with the pair: keys taken
/// without it would be refused as incomplete temporary credentials.
fn aws_credentials(v: &Vars<'_>) -> Result<Option<Box<AwsCredentials>>, ConfigError> {
    let session_token = v
        .optional("AWS_SESSION_TOKEN")
        .map(|t| Secret::new(t.to_owned()));
    match (
        v.optional("AWS_ACCESS_KEY_ID"),
        v.optional("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => Ok(Some(Box::new(AwsCredentials {
            access_key_id: id.to_owned(),
            secret_access_key: Secret::new(secret.to_owned()),
            session_token,
        }))),
        (Some(_), None) => Err(invalid(
            "AWS_SECRET_ACCESS_KEY",
            "is required with AWS_ACCESS_KEY_ID",
        )),
        (None, Some(_)) => Err(invalid(
            "AWS_ACCESS_KEY_ID",
            "is required with AWS_SECRET_ACCESS_KEY",
        )),
        (None, None) if session_token.is_some() => Err(invalid(
            "AWS_SESSION_TOKEN",
            "needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )),
        (None, None) => Ok(None),
    }
}
