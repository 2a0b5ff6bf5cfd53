//! S3 Object Lock, through the AWS SDK.
//!
//! object_store cannot give an object its own retain-until date: its puts
//! take no lock headers, and headers added around it would go unsigned,
//! which AWS refuses for `x-amz-*`. So a remote added with `--object-lock`
//! puts its objects, reads their locks and deletes them through the SDK;
//! every other call goes through object_store as for any bucket.
//!
//! Locked objects are in COMPLIANCE mode: until the date, nobody (not the
//! bucket's owner, not root on the clinic's server with its keys) can
//! delete or overwrite them. A bucket with Object Lock is versioned; a plain
//! DELETE there only hides the object behind a delete marker, so a delete
//! here removes every version of the key, which the server allows once
//! their dates have passed. And an object someone hid that way is still
//! there: reads find it by its version (`hidden_version`, `get_version`).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockMode};

use super::s3::{S3Spec, CONNECT_TIMEOUT, MAX_RETRIES, REQUEST_TIMEOUT};
use super::{ObjectName, PlaceError};

/// What a create-only, locked put did.
pub(super) enum LockedPut {
    Created,
    /// An object of that name is there already (412), or a concurrent put
    /// of it is under way (409); the text is the server's.
    Exists(String),
}

/// One version of a key in a versioned bucket, or one delete marker.
pub(super) struct Version {
    pub key: String,
    pub id: String,
    pub size: u64,
}

/// The SDK client of a bucket with Object Lock.
#[derive(Clone)]
pub(super) struct LockClient {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// The place, for messages.
    place: String,
}

impl LockClient {
    pub(super) fn new(
        spec: &S3Spec,
        place: String,
        key_id: String,
        secret: String,
        session_token: Option<String>,
    ) -> Self {
        let credentials = Credentials::new(key_id, secret, session_token, None, "environment");
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(spec.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(spec.path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_RETRIES as u32 + 1))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(REQUEST_TIMEOUT)
                    .build(),
            );
        if let Some(endpoint) = &spec.endpoint {
            config = config.endpoint_url(endpoint);
        }
        LockClient {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket: spec.bucket.clone(),
            place,
        }
    }

    /// Whether the bucket has Object Lock enabled; `once`: one attempt,
    /// no retries (a probe whose failure is not an error).
    pub(super) async fn lock_enabled(&self, once: bool) -> Result<bool, PlaceError> {
        let mut ask = self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .customize();
        if once {
            ask = ask.config_override(
                aws_sdk_s3::Config::builder().retry_config(RetryConfig::disabled()),
            );
        }
        let answer = ask.send().await;
        match answer {
            Ok(out) => Ok(out
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                == Some(&ObjectLockEnabled::Enabled)),
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => Ok(false),
            Err(e) => Err(self.error(e, None)),
        }
    }

    /// Fails unless the bucket has Object Lock enabled: a remote added with
    /// `--object-lock` must never store an object unlocked.
    pub(super) async fn check_bucket(&self) -> Result<(), PlaceError> {
        match self.lock_enabled(false).await? {
            true => Ok(()),
            false => Err(self.refused(
                0,
                format!(
                    "bucket {:?} does not have Object Lock enabled: enable it on the bucket \
                     (S3 console, or `aws s3api put-object-lock-configuration`), or add the \
                     remote without --object-lock",
                    self.bucket
                ),
            )),
        }
    }

    /// Stores `bytes` at `key` unless something is there, locked in
    /// COMPLIANCE mode until `until`.
    pub(super) async fn put(
        &self,
        key: String,
        name: ObjectName,
        bytes: Vec<u8>,
        until: jiff::Timestamp,
    ) -> Result<LockedPut, PlaceError> {
        let answer = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .if_none_match("*")
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(date(until))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(LockedPut::Created),
            Err(e) if matches!(status(&e), 409 | 412) => {
                Ok(LockedPut::Exists(DisplayErrorContext(&e).to_string()))
            }
            Err(e) => Err(self.error(e, Some(name))),
        }
    }

    /// The retain-until date of the object at `key` (of its version
    /// `version`, else of its current one): `None` for an object without
    /// one, `NotFound` for no object.
    pub(super) async fn retain_until(
        &self,
        key: &str,
        version: Option<&str>,
        name: ObjectName,
    ) -> Result<Option<jiff::Timestamp>, PlaceError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| self.error(e, Some(name)))?;
        Ok(head.object_lock_retain_until_date().map(timestamp))
    }

    /// Removes every version of `key` (and its delete markers); `Locked`,
    /// and nothing removed, while any version is locked after `now`.
    pub(super) async fn delete(
        &self,
        key: String,
        name: ObjectName,
        now: jiff::Timestamp,
    ) -> Result<(), PlaceError> {
        let (versions, markers) = self.versions_of(&key, name).await?;
        for version in &versions {
            if let Some(until) = self.retain_until(&key, Some(&version.id), name).await? {
                if until > now {
                    return Err(PlaceError::Locked { name, until });
                }
            }
        }
        for version in versions.iter().chain(&markers).map(|v| &v.id) {
            let answer = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .version_id(version)
                .send()
                .await;
            match answer {
                Ok(_) => {}
                // The server's clock is behind ours: still locked there.
                Err(e) if status(&e) == 403 => {
                    match self.retain_until(&key, Some(version), name).await {
                        Ok(Some(until)) => return Err(PlaceError::Locked { name, until }),
                        _ => return Err(self.error(e, Some(name))),
                    }
                }
                Err(e) => return Err(self.error(e, Some(name))),
            }
        }
        Ok(())
    }

    /// A version of `key` that is not a delete marker, if any: what a
    /// delete marker may hide. Every version of a key holds the same bytes
    /// (its name is their hash).
    pub(super) async fn hidden_version(
        &self,
        key: &str,
        name: ObjectName,
    ) -> Result<Option<Version>, PlaceError> {
        let (versions, _) = self.versions_of(key, name).await?;
        Ok(versions.into_iter().next())
    }

    /// The versions of `key` that are not delete markers, and its delete
    /// markers.
    async fn versions_of(
        &self,
        key: &str,
        name: ObjectName,
    ) -> Result<(Vec<Version>, Vec<Version>), PlaceError> {
        let (mut versions, mut markers) = self.versions_under(key, Some(name)).await?;
        // The prefix `key` also matches longer keys.
        versions.retain(|v| v.key == key);
        markers.retain(|m| m.key == key);
        Ok((versions, markers))
    }

    /// Bytes `range` (all with `None`) of version `id` of `key`.
    pub(super) async fn get_version(
        &self,
        key: &str,
        id: &str,
        range: Option<std::ops::Range<u64>>,
        name: ObjectName,
    ) -> Result<Vec<u8>, PlaceError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(id)
            .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end - 1)))
            .send()
            .await
            .map_err(|e| self.error(e, Some(name)))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| PlaceError::Unreachable {
                place: self.place.clone(),
                source: e.to_string().into(),
            })?;
        Ok(body.into_bytes().to_vec())
    }

    /// Every version under `prefix` that is not a delete marker, and every
    /// delete marker; `name` is the object asked about, for errors.
    pub(super) async fn versions_under(
        &self,
        prefix: &str,
        name: Option<ObjectName>,
    ) -> Result<(Vec<Version>, Vec<Version>), PlaceError> {
        let (mut versions, mut markers) = (Vec::new(), Vec::new());
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| self.error(e, name))?;
            versions.extend(page.versions().iter().filter_map(|v| {
                Some(Version {
                    key: v.key()?.to_string(),
                    id: v.version_id()?.to_string(),
                    size: v.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                })
            }));
            markers.extend(page.delete_markers().iter().filter_map(|m| {
                Some(Version {
                    key: m.key()?.to_string(),
                    id: m.version_id()?.to_string(),
                    size: 0,
                })
            }));
            if page.is_truncated() != Some(true) {
                return Ok((versions, markers));
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() && version_marker.is_none() {
                return Ok((versions, markers));
            }
        }
    }

    fn refused(&self, status: u16, message: String) -> PlaceError {
        PlaceError::Refused {
            place: self.place.clone(),
            status,
            message,
        }
    }

    /// The place's error for `e`, as `S3Place` classifies object_store's.
    fn error<E>(&self, e: SdkError<E, HttpResponse>, name: Option<ObjectName>) -> PlaceError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let unreachable = |e: SdkError<E, HttpResponse>| PlaceError::Unreachable {
            place: self.place.clone(),
            source: DisplayErrorContext(e).to_string().into(),
        };
        if matches!(
            e,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ) {
            return unreachable(e);
        }
        let code = e.code().unwrap_or("no error code").to_string();
        match (status(&e), name) {
            (404, _) if code == "NoSuchBucket" => self.refused(
                404,
                format!(
                    "no such bucket {:?}: create it first (phivault never creates buckets), \
                     or check --endpoint and --region",
                    self.bucket
                ),
            ),
            (404, Some(name)) => PlaceError::NotFound(name),
            (s, _) if s == 429 || s >= 500 => unreachable(e),
            (s @ (401 | 403), _) => self.refused(
                s,
                format!(
                    "access denied: check {}, {}, the bucket's policy and --region ({code})",
                    super::s3::ENV_ACCESS_KEY,
                    super::s3::ENV_SECRET_KEY,
                ),
            ),
            (s, _) => self.refused(s, DisplayErrorContext(&e).to_string()),
        }
    }
}

/// The HTTP status of the answer, 0 if there was none.
fn status<E>(e: &SdkError<E, HttpResponse>) -> u16 {
    e.raw_response().map_or(0, |r| r.status().as_u16())
}

/// S3 dates are whole seconds: round up, so the lock is never shorter than
/// asked.
fn date(t: jiff::Timestamp) -> DateTime {
    let up = (t.subsec_nanosecond() > 0) as i64;
    DateTime::from_secs(t.as_second() + up)
}

fn timestamp(d: &DateTime) -> jiff::Timestamp {
    jiff::Timestamp::new(d.secs(), d.subsec_nanos() as i32).unwrap_or(jiff::Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_dates_round_up_to_whole_seconds() {
        let t = jiff::Timestamp::new(1_800_000_000, 1).unwrap();
        assert_eq!(date(t).secs(), 1_800_000_001);
        let whole = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(date(whole).secs(), 1_800_000_000);
        assert_eq!(timestamp(&date(whole)), whole);
    }
}
