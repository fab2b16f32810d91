//! Object stores behind `Storage`: `gs://bucket/key` and `s3://bucket/key`
//! (also `s3a://`, `s3n://`, as Hadoop writes them) through the
//! `object_store` crate, and `Storages`, which picks the local filesystem
//! or an object store by a location's scheme.
//!
//! The trait stays synchronous: requests run on a small tokio runtime
//! hidden here (`run`), made on the first remote location, which the REST
//! catalog (`probe::iceberg`) shares. Every request is bounded: at most
//! `MAX_REQUESTS` at once, each given `REQUEST_TIMEOUT`, 429s and 5xx
//! retried with backoff (`object_store`'s `RetryConfig`), and a whole read
//! or listing, retries included, given `OPERATION_TIMEOUT`; so an emulator
//! that is down or failing is an error within a bounded time, never a hang.
//!
//! Credentials come from each cloud's standard environment, read as
//! `object_store`'s `from_env()` builders read it:
//! - S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//!   `AWS_REGION`, `AWS_ENDPOINT` or `AWS_ENDPOINT_URL` (an emulator, MinIO),
//!   `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint; without keys, the
//!   instance's or the container's role.
//! - GCS: `GOOGLE_SERVICE_ACCOUNT` (or `GOOGLE_SERVICE_ACCOUNT_PATH`) naming a
//!   service-account file, `GOOGLE_SERVICE_ACCOUNT_KEY` holding one, or
//!   `GOOGLE_APPLICATION_CREDENTIALS` (application default credentials);
//!   without any, the instance's metadata server. For an emulator
//!   (fake-gcs-server), a service-account file with `"gcs_base_url":
//!   "http://127.0.0.1:PORT"`, `"disable_oauth": true` and empty
//!   `client_email`, `private_key` and `private_key_id`: `object_store`
//!   honours those two
//!   fields only in a service-account file, so a file named by
//!   `GOOGLE_APPLICATION_CREDENTIALS` that has either is read as one.
//!
//! Nothing here prints a credential: errors name the object's URL, and any
//! URL in a message has its user information redacted.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientConfigKey, GetOptions, ObjectStore, RetryConfig};

use super::storage::{Listed, LocalStorage, Storage, StorageError};
use crate::settings::{is_url, redact_url};

/// Requests in flight at once, over every bucket.
pub const MAX_REQUESTS: usize = 16;
/// One HTTP request, from connecting to the end of its body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One read or listing, retries and waiting for a turn included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

/// Retries of a 429, a 5xx or a failed connection: 0.1 s, 0.2 s, 0.4 s,
/// 0.8 s apart, so a store that stays down fails in about 2 s.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(60),
    }
}

/// The runtime remote requests run on, made once.
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("chronon-build-io")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the I/O runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Runs `future` to its end on the hidden runtime, from synchronous code
/// (any thread but the runtime's own); `Err` when it took longer than
/// `limit`, naming the limit.
pub fn run<F: Future>(limit: Duration, future: F) -> Result<F::Output, String> {
    runtime()?
        .block_on(async { tokio::time::timeout(limit, future).await })
        .map_err(|_| format!("no answer within {}", humantime::format_duration(limit)))
}

/// `message` with the user information of every URL in it redacted.
pub fn redact_message(message: &str) -> String {
    message
        .split(' ')
        .map(|word| {
            if word.contains("://") {
                redact_url(word)
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Cloud {
    Gcs,
    S3,
}

/// A remote location split: its cloud, bucket and key.
#[derive(Debug, PartialEq, Eq)]
struct Remote<'a> {
    cloud: Cloud,
    bucket: &'a str,
    key: &'a str,
}

impl Remote<'_> {
    /// `None` for a location that is not on an object store.
    fn parse(location: &str) -> Option<Result<Remote<'_>, StorageError>> {
        let (scheme, rest) = location.split_once("://")?;
        let cloud = match scheme {
            "gs" => Cloud::Gcs,
            "s3" | "s3a" | "s3n" => Cloud::S3,
            _ => return None,
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err(StorageError::Other(format!(
                "{}: no bucket in the URL",
                redact_url(location)
            ))));
        }
        Some(Ok(Remote { cloud, bucket, key }))
    }
}

/// What a bucket answers: reads and delimited listings from an offset.
trait Bucket: ObjectStore + PaginatedListStore {}
impl<T: ObjectStore + PaginatedListStore> Bucket for T {}

/// The `gs://` and `s3://` buckets: one store per bucket, made on its first
/// use and kept.
pub struct ObjectStores {
    env: Env,
    buckets: Mutex<HashMap<(Cloud, String), Arc<dyn Bucket>>>,
    turns: OnceLock<tokio::sync::Semaphore>,
}

impl Default for ObjectStores {
    /// Stores configured from the process's environment.
    fn default() -> ObjectStores {
        ObjectStores::with_env(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        )
    }
}

impl ObjectStores {
    /// Stores configured from `env` rather than the process's environment.
    pub fn with_env(env: Env) -> ObjectStores {
        ObjectStores {
            env,
            buckets: Mutex::default(),
            turns: OnceLock::new(),
        }
    }

    fn bucket(&self, at: &Remote<'_>) -> Result<Arc<dyn Bucket>, StorageError> {
        let key = (at.cloud, at.bucket.to_string());
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bucket) = buckets.get(&key) {
            return Ok(bucket.clone());
        }
        let made = match at.cloud {
            Cloud::Gcs => gcs(at.bucket, &self.env),
            Cloud::S3 => s3(at.bucket, &self.env),
        }
        .map_err(|e| {
            StorageError::Other(format!(
                "cannot set up a client for the bucket: {}",
                redact_message(&e)
            ))
        })?;
        buckets.insert(key, made.clone());
        Ok(made)
    }

    /// Runs a request on the runtime, waiting for a turn among `MAX_REQUESTS`.
    fn request<T>(
        &self,
        request: impl Future<Output = Result<T, object_store::Error>>,
    ) -> Result<T, StorageError> {
        let turns = self
            .turns
            .get_or_init(|| tokio::sync::Semaphore::new(MAX_REQUESTS));
        let answer = run(OPERATION_TIMEOUT, async {
            let _turn = turns.acquire().await;
            request.await
        });
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(object_store::Error::NotFound { .. })) => Err(StorageError::NotFound),
            // The callers name the object; the message says what befell it.
            Ok(Err(e)) => Err(StorageError::Other(redact_message(&error_chain(&e)))),
            Err(timeout) => Err(StorageError::Other(timeout)),
        }
    }

    fn read(&self, location: &str, at: &Remote<'_>) -> Result<Vec<u8>, StorageError> {
        let bucket = self.bucket(at)?;
        let path = object_path(location, at.key)?;
        self.request(async {
            let got = bucket.get_opts(&path, GetOptions::default()).await?;
            Ok(got.bytes().await?.to_vec())
        })
    }

    /// A delimited listing of `folder/` from `after`, page by page.
    fn list(&self, at: &Remote<'_>, after: Option<&str>) -> Result<Vec<Listed>, StorageError> {
        let bucket = self.bucket(at)?;
        let prefix = match at.key.trim_end_matches('/') {
            "" => String::new(),
            key => format!("{key}/"),
        };
        let objects = self.request(async {
            let mut objects = Vec::new();
            let mut page_token = None;
            loop {
                let options = PaginatedListOptions {
                    offset: after.map(|after| format!("{prefix}{after}")),
                    delimiter: Some("/".into()),
                    page_token,
                    ..PaginatedListOptions::default()
                };
                let page = bucket
                    .list_paginated(Some(prefix.as_str()).filter(|p| !p.is_empty()), options)
                    .await?;
                objects.extend(page.result.objects);
                page_token = page.page_token;
                if page_token.is_none() {
                    return Ok(objects);
                }
            }
        })?;
        let mut out: Vec<Listed> = objects
            .into_iter()
            .filter_map(|object| {
                let name = object.location.as_ref().strip_prefix(prefix.as_str())?;
                // Stores that ignore `start-after` (fake-gcs-server's XML
                // API does) or a delimiter still give only what the trait
                // promises.
                let wanted = !name.is_empty()
                    && !name.contains('/')
                    && after.is_none_or(|after| name > after);
                wanted.then(|| Listed {
                    name: name.to_string(),
                    size: object.size,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// A key as `object_store` names it, taken as it is (no percent-decoding).
fn object_path(location: &str, key: &str) -> Result<ObjectPath, StorageError> {
    ObjectPath::parse(key).map_err(|e| {
        StorageError::Other(format!(
            "{}: not an object key object_store accepts: {e}",
            redact_url(location)
        ))
    })
}

/// An error and its sources, each said once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// The environment the stores are configured from: the process's,
/// or one given (tests).
type Env = Vec<(String, String)>;

fn var<'a>(env: &'a Env, name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// As `GoogleCloudStorageBuilder::from_env()` does, from `env`.
fn gcs(bucket: &str, env: &Env) -> Result<Arc<dyn Bucket>, String> {
    let mut builder = GoogleCloudStorageBuilder::new();
    if let Some(path) = var(env, "SERVICE_ACCOUNT") {
        builder = builder.with_service_account_path(path);
    }
    for (key, value) in env {
        if key.starts_with("GOOGLE_")
            && let Ok(config) = key.to_ascii_lowercase().parse::<GoogleConfigKey>()
        {
            builder = builder.with_config(config, value);
        }
    }
    if let Some(path) = emulator_service_account(env) {
        builder = builder.with_service_account_path(path);
    }
    let store = builder
        .with_bucket_name(bucket)
        .with_retry(retry_config())
        .with_config(
            GoogleConfigKey::Client(ClientConfigKey::Timeout),
            humantime::format_duration(REQUEST_TIMEOUT).to_string(),
        )
        .with_config(
            GoogleConfigKey::Client(ClientConfigKey::ConnectTimeout),
            humantime::format_duration(CONNECT_TIMEOUT).to_string(),
        )
        .build()
        .map_err(|e| error_chain(&e))?;
    Ok(Arc::new(store))
}

/// `GOOGLE_APPLICATION_CREDENTIALS` when it names a service-account file
/// for an emulator (`gcs_base_url` or `disable_oauth`), and no service
/// account is named otherwise: `object_store` reads those fields only from
/// a service-account file.
fn emulator_service_account(env: &Env) -> Option<String> {
    let named = [
        "GOOGLE_SERVICE_ACCOUNT",
        "GOOGLE_SERVICE_ACCOUNT_PATH",
        "GOOGLE_SERVICE_ACCOUNT_KEY",
        "SERVICE_ACCOUNT",
    ];
    if named.iter().any(|name| var(env, name).is_some()) {
        return None;
    }
    let path = var(env, "GOOGLE_APPLICATION_CREDENTIALS")?;
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let emulator = json.get("gcs_base_url").is_some()
        || json
            .get("disable_oauth")
            .and_then(serde_json::Value::as_bool)
            == Some(true);
    emulator.then(|| path.to_string())
}

/// As `AmazonS3Builder::from_env()` does, from `env`.
fn s3(bucket: &str, env: &Env) -> Result<Arc<dyn Bucket>, String> {
    let mut builder = AmazonS3Builder::new();
    for (key, value) in env {
        if key.starts_with("AWS_")
            && let Ok(config) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
        {
            builder = builder.with_config(config, value);
        }
    }
    let store = builder
        .with_bucket_name(bucket)
        .with_retry(retry_config())
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
            humantime::format_duration(REQUEST_TIMEOUT).to_string(),
        )
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            humantime::format_duration(CONNECT_TIMEOUT).to_string(),
        )
        .build()
        .map_err(|e| error_chain(&e))?;
    Ok(Arc::new(store))
}

/// Local paths and `file:` URLs on the filesystem, `gs://` and `s3://` on
/// their object stores; any other scheme is an error.
#[derive(Default)]
pub struct Storages {
    remote: ObjectStores,
}

impl Storages {
    /// With the object stores configured from `env` (tests).
    pub fn with_env(env: Vec<(String, String)>) -> Storages {
        Storages {
            remote: ObjectStores::with_env(env),
        }
    }

    fn unsupported(location: &str) -> Option<StorageError> {
        let scheme = location.split("://").next().unwrap_or_default();
        (is_url(location) && scheme != "file").then(|| {
            StorageError::Other(format!(
                "{}: {scheme}:// is not supported (local paths, file:, gs:// and s3:// are)",
                redact_url(location)
            ))
        })
    }
}

impl Storage for Storages {
    fn read(&self, location: &str) -> Result<Vec<u8>, StorageError> {
        match Remote::parse(location) {
            Some(at) => self.remote.read(location, &at?),
            None => match Storages::unsupported(location) {
                Some(e) => Err(e),
                None => LocalStorage.read(location),
            },
        }
    }

    fn list(&self, folder: &str, after: Option<&str>) -> Result<Vec<Listed>, StorageError> {
        match Remote::parse(folder) {
            Some(at) => self.remote.list(&at?, after),
            None => match Storages::unsupported(folder) {
                Some(e) => Err(e),
                None => LocalStorage.list(folder, after),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_locations_split_into_cloud_bucket_and_key() {
        let at = |location| Remote::parse(location).map(|r| r.map_err(|e| e.to_string()));
        assert_eq!(
            at("gs://b/ns.db/t/_delta_log"),
            Some(Ok(Remote {
                cloud: Cloud::Gcs,
                bucket: "b",
                key: "ns.db/t/_delta_log"
            }))
        );
        assert_eq!(
            at("s3a://b/k"),
            Some(Ok(Remote {
                cloud: Cloud::S3,
                bucket: "b",
                key: "k"
            }))
        );
        assert_eq!(
            at("s3://b"),
            Some(Ok(Remote {
                cloud: Cloud::S3,
                bucket: "b",
                key: ""
            }))
        );
        assert!(matches!(at("gs:///k"), Some(Err(_))));
        assert_eq!(at("/a/b"), None);
        assert_eq!(at("file:///a/b"), None);
        assert_eq!(at("abfss://c@a/k"), None);
    }

    #[test]
    fn other_schemes_are_refused_and_local_paths_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "x").unwrap();
        let folder = dir.path().display().to_string();
        let storages = Storages::default();
        assert_eq!(storages.read(&format!("{folder}/a")).unwrap(), b"x");
        assert_eq!(
            storages
                .list(&format!("file://{folder}"), None)
                .unwrap()
                .len(),
            1
        );
        let err = storages
            .read("abfss://user:secret@host/k")
            .unwrap_err()
            .to_string();
        assert!(err.contains("abfss:// is not supported"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn messages_never_show_a_urls_password() {
        assert_eq!(
            redact_message("GET http://u:pw@127.0.0.1:9/b/k failed"),
            "GET http://u:***@127.0.0.1:9/b/k failed"
        );
    }
}
