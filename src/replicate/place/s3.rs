//! S3-compatible object storage as a place: AWS S3, MinIO, Ceph RGW, Garage,
//! Wasabi, Backblaze B2.
//!
//! Objects live at `BUCKET/PREFIX/<key>`. Puts are create-only on the
//! server's side (`If-None-Match: *`), so two writers, or a rerun racing a
//! slow first attempt, can never overwrite an object. The engine is sync;
//! the client is async: each place owns a small tokio runtime, runs every
//! request on it and waits, so no caller needs a runtime of its own.
//!
//! Credentials come only from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`): never from argv, where any
//! user of the machine can read them, never from a file of the store, and
//! never in a message.

use std::error::Error as StdError;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::client::HttpError;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutPayload, RetryConfig,
};

use super::s3_lock::{LockClient, LockedPut, Version};
use super::{NamedBytes, ObjectKind, ObjectName, ObjectPlace, PlaceError, PutOptions, PutOutcome};

/// The region when none is given: AWS's default, and what most
/// self-hosted servers accept.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The environment variables credentials are read from.
pub const ENV_ACCESS_KEY: &str = "AWS_ACCESS_KEY_ID";
pub const ENV_SECRET_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const ENV_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";

/// Where an S3 place is: everything but the credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Spec {
    pub bucket: String,
    /// Folder inside the bucket, without a leading or trailing `/`; may be
    /// empty.
    pub prefix: String,
    /// `https://host[:port]` of a service other than AWS; `None` for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`:
    /// what most self-hosted servers need.
    pub path_style: bool,
    /// Whether a plain `http://` endpoint is allowed.
    pub allow_http: bool,
    /// Whether objects are put with a COMPLIANCE-mode retain-until date
    /// (S3 Object Lock; the bucket must have it enabled).
    pub object_lock: bool,
}

impl S3Spec {
    /// `s3://bucket/prefix` (never a secret: there are none in a spec).
    pub fn url(&self) -> String {
        match self.prefix.is_empty() {
            true => format!("s3://{}", self.bucket),
            false => format!("s3://{}/{}", self.bucket, self.prefix),
        }
    }
}

/// The keys an S3 place signs its requests with.
#[derive(Clone)]
pub struct S3Credentials {
    key_id: String,
    secret: String,
    session_token: Option<String>,
}

impl S3Credentials {
    pub fn new(key_id: String, secret: String, session_token: Option<String>) -> Self {
        S3Credentials {
            key_id,
            secret,
            session_token,
        }
    }

    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, if set,
    /// `AWS_SESSION_TOKEN`; `None` unless both keys are set.
    pub fn from_env() -> Option<Self> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Some(S3Credentials {
            key_id: env(ENV_ACCESS_KEY)?,
            secret: env(ENV_SECRET_KEY)?,
            session_token: env(ENV_SESSION_TOKEN),
        })
    }
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// How long one call may take before it reports the place unreachable: the
/// replication worker backs off and retries on its own, so a call must not
/// sit in the client's retries for minutes.
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const MAX_RETRIES: usize = 3;
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request, body included: a 32 MiB pack at 300 KB/s.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// From this size a put first asks whether the object is there (one round
/// trip) rather than upload it to be told so: a rerun after a kill finds
/// most of its packs there. Servers also answer a create-only put of an
/// existing object before reading its body and close the connection under
/// the upload, which the client reports as a failed request.
const HEAD_FIRST: usize = 1 << 20;

/// Objects moved at once: round trips, not the CPU, set the pace (restic
/// and rclone use 4 to 5 connections by default). Each holds a pack (32
/// MiB) and its object in memory.
const S3_CONCURRENCY: usize = 4;

/// A place in an S3 bucket.
pub struct S3Place {
    spec: S3Spec,
    store: Arc<AmazonS3>,
    /// The SDK client that puts, reads the locks of and deletes objects of
    /// a remote with Object Lock (`s3_lock` says why).
    lock: Option<LockClient>,
    /// The SDK client, for what object_store cannot do: the above, and
    /// reading objects hidden behind delete markers.
    sdk: LockClient,
    /// The bucket has Object Lock: an object that someone hid behind a
    /// delete marker (a plain DELETE) is still there, locked, and is read
    /// through the marker.
    reads_hidden: bool,
    /// `Some` until drop.
    runtime: Option<tokio::runtime::Runtime>,
}

impl S3Place {
    /// Opens the place with the credentials of the environment, without
    /// talking to the server: for a remote already added, whose
    /// reachability each call reports.
    pub fn open(spec: &S3Spec) -> Result<Self, PlaceError> {
        let Some(credentials) = S3Credentials::from_env() else {
            return Err(PlaceError::Refused {
                place: describe(spec),
                status: 0,
                message: format!(
                    "no credentials: set {ENV_ACCESS_KEY} and {ENV_SECRET_KEY} (and \
                     {ENV_SESSION_TOKEN} for temporary ones) in the environment of phivault"
                ),
            });
        };
        Self::open_with(spec, credentials)
    }

    /// `open` with the credentials given.
    pub fn open_with(spec: &S3Spec, credentials: S3Credentials) -> Result<Self, PlaceError> {
        let describe = describe(spec);
        let refused = |message: String| PlaceError::Refused {
            place: describe.clone(),
            status: 0,
            message,
        };
        let S3Credentials {
            key_id,
            secret,
            session_token,
        } = credentials;
        let sdk = LockClient::new(
            spec,
            describe.clone(),
            key_id.clone(),
            secret.clone(),
            session_token.clone(),
        );
        let lock = spec.object_lock.then(|| sdk.clone());
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&spec.bucket)
            .with_region(&spec.region)
            .with_virtual_hosted_style_request(!spec.path_style)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.,
                },
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_timeout(REQUEST_TIMEOUT),
            )
            // After the client options, which it is one of.
            .with_allow_http(spec.allow_http);
        if let Some(token) = session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &spec.endpoint {
            builder = builder.with_endpoint(bucket_endpoint(spec, endpoint));
        }
        // The builder's errors name options, never their values' secrets.
        let store = builder.build().map_err(|e| refused(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(S3_CONCURRENCY)
            .thread_name("phivault-s3")
            .on_thread_start(block_sigpipe)
            .enable_all()
            .build()
            .map_err(|source| PlaceError::Io {
                path: PathBuf::from(&describe),
                source,
            })?;
        Ok(S3Place {
            spec: spec.clone(),
            store: Arc::new(store),
            reads_hidden: lock.is_some(),
            lock,
            sdk,
            runtime: Some(runtime),
        })
    }

    /// Opens the place to read it (`recover`), asking the bucket whether it
    /// has Object Lock: then objects hidden behind delete markers are read
    /// through them. A server without the Object Lock API has none.
    pub fn open_for_reading(spec: &S3Spec) -> Result<Self, PlaceError> {
        let mut place = Self::open(spec)?;
        if !place.reads_hidden {
            let sdk = place.sdk.clone();
            // A server without the Object Lock API (s3s-fs, some gateways)
            // has no lock; one that cannot be reached says so at the first
            // read, as for any remote.
            place.reads_hidden = place
                .run(async move { sdk.lock_enabled(true).await })
                .unwrap_or(false);
        }
        Ok(place)
    }

    /// Opens the place and checks that its bucket answers (one LIST), and
    /// with Object Lock that the bucket has it enabled: for adding a
    /// remote, so that a typo fails now and not at the first pass. Buckets
    /// are made by their owner, never by phivault.
    pub fn create(spec: &S3Spec) -> Result<Self, PlaceError> {
        Self::open(spec)?.check_bucket()
    }

    /// `create` with the credentials given.
    pub fn create_with(spec: &S3Spec, credentials: S3Credentials) -> Result<Self, PlaceError> {
        Self::open_with(spec, credentials)?.check_bucket()
    }

    fn check_bucket(self) -> Result<Self, PlaceError> {
        let keys = self.path(ObjectKind::Keys.folder());
        let store = self.store.clone();
        self.run(async move { store.list_with_delimiter(Some(&keys)).await })
            .map_err(|e| self.error(e, None))?;
        if let Some(lock) = self.lock.clone() {
            self.run(async move { lock.check_bucket().await })?;
        }
        Ok(self)
    }

    pub fn spec(&self) -> &S3Spec {
        &self.spec
    }

    /// Runs `f` on the runtime's threads, where every socket is read and
    /// written (see `block_sigpipe`), and waits for it.
    fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let runtime = self.runtime.as_ref().expect("runtime until drop");
        match runtime.block_on(runtime.spawn(f)) {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("{}: a request was cancelled: {e}", self.describe()),
        }
    }

    /// `PREFIX/key`.
    fn path(&self, key: &str) -> ObjectPath {
        match self.spec.prefix.is_empty() {
            true => ObjectPath::from(key),
            false => ObjectPath::from(format!("{}/{key}", self.spec.prefix)),
        }
    }

    fn object_path(&self, name: &ObjectName) -> ObjectPath {
        self.path(&name.key())
    }

    /// The place's error for `e`; `name` is the object the call was about.
    fn error(&self, e: object_store::Error, name: Option<&ObjectName>) -> PlaceError {
        let text = chain_text(&e);
        let refused = |status: u16, message: String| PlaceError::Refused {
            place: self.describe(),
            status,
            message,
        };
        if text.contains("NoSuchBucket") {
            return refused(
                404,
                format!(
                    "no such bucket {:?}: create it first (phivault never creates buckets), \
                     or check --endpoint and --region",
                    self.spec.bucket
                ),
            );
        }
        let unreachable = |e: object_store::Error| PlaceError::Unreachable {
            place: self.describe(),
            source: Box::new(e),
        };
        match classify(&e) {
            Failure::Transport => unreachable(e),
            Failure::Status(404) => match name {
                Some(name) => PlaceError::NotFound(*name),
                None => refused(404, text),
            },
            Failure::Status(s) if s == 429 || s >= 500 => unreachable(e),
            Failure::Status(s @ (401 | 403)) => refused(
                s,
                format!(
                    "access denied: check {ENV_ACCESS_KEY}, {ENV_SECRET_KEY}, the bucket's \
                     policy and --region ({})",
                    s3_code(&text).unwrap_or("no error code")
                ),
            ),
            Failure::Status(s) => refused(s, text),
            // S3's "error in a 200 response" bodies that mean "try again".
            Failure::Unknown if text.contains("InternalError") || text.contains("SlowDown") => {
                unreachable(e)
            }
            Failure::Unknown => refused(0, text),
        }
    }
}

impl S3Place {
    /// A version of the object that a delete marker hides, if any.
    fn hidden_version(&self, name: &ObjectName) -> Result<Option<Version>, PlaceError> {
        let (sdk, key, name) = (self.sdk.clone(), self.object_path(name).to_string(), *name);
        self.run(async move { sdk.hidden_version(&key, name).await })
    }

    /// Bytes `range` (all with `None`) of the object a delete marker hides.
    fn get_hidden(
        &self,
        name: &ObjectName,
        range: Option<Range<u64>>,
    ) -> Result<Vec<u8>, PlaceError> {
        let version = self
            .hidden_version(name)?
            .ok_or(PlaceError::NotFound(*name))?;
        let (sdk, key, name) = (self.sdk.clone(), self.object_path(name).to_string(), *name);
        self.run(async move { sdk.get_version(&key, &version.id, range, name).await })
    }

    /// A create-only put through object_store, with no lock date.
    fn put_unlocked(&self, name: &ObjectName, bytes: &[u8]) -> Result<LockedPut, PlaceError> {
        let path = self.object_path(name);
        let payload = PutPayload::from(bytes.to_vec());
        let store = self.store.clone();
        let put = self.run(async move {
            let mode = object_store::PutOptions::from(PutMode::Create);
            store.put_opts(&path, payload, mode).await
        });
        match put {
            Ok(_) => Ok(LockedPut::Created),
            Err(object_store::Error::AlreadyExists { source, .. }) => {
                Ok(LockedPut::Exists(source.to_string()))
            }
            Err(e) => Err(self.error(e, Some(name))),
        }
    }

    /// `AlreadyThere` for an object of the right size under `name` (a
    /// name fixes its bytes, so their size; reads check the rest).
    fn already_there(
        &self,
        name: &ObjectName,
        size: u64,
        len: u64,
    ) -> Result<PutOutcome, PlaceError> {
        match size == len {
            true => Ok(PutOutcome::AlreadyThere),
            false => Err(PlaceError::Damaged {
                name: *name,
                what: "an object of another size is stored under this name",
            }),
        }
    }
}

/// Blocks SIGPIPE on the calling thread (a runtime thread, which does all
/// of a place's socket I/O). The CLI restores SIGPIPE's default action, so
/// that `phivault log | head` ends quietly; a write to a connection the
/// server has closed (an early answer, an idle keep-alive it dropped)
/// would then kill the whole process without a word. Blocked, the write
/// fails with EPIPE and the request is retried or reported.
fn block_sigpipe() {
    // SAFETY: sigset_t is plain data that sigemptyset initialises;
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

impl Drop for S3Place {
    fn drop(&mut self) {
        // A DNS lookup stuck in a blocking thread must not hold up the
        // caller's drop (a mount's replication thread, a CLI exit).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// What went wrong, as far as the error says.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// No HTTP response: connect, DNS, timeout, a dropped connection.
    Transport,
    Status(u16),
    Unknown,
}

fn classify(e: &object_store::Error) -> Failure {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => return Failure::Status(404),
        E::PermissionDenied { .. } => return Failure::Status(403),
        E::Unauthenticated { .. } => return Failure::Status(401),
        E::Precondition { .. } => return Failure::Status(412),
        E::AlreadyExists { .. } => return Failure::Status(409),
        _ => {}
    }
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        if err.downcast_ref::<HttpError>().is_some() {
            return Failure::Transport;
        }
        current = err.source();
    }
    // object_store keeps the status of other errors in a private type; its
    // text is "... status code: 503 Service Unavailable ...".
    let text = chain_text(e);
    text.split("status code: ")
        .nth(1)
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .map_or(Failure::Unknown, Failure::Status)
}

/// The error and its sources, as one line.
fn chain_text(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        let s = err.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        current = err.source();
    }
    text
}

/// The `<Code>` of an S3 error body in `text`.
fn s3_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(&text[start..start + len])
}

/// The endpoint the client sends requests to: `--endpoint` itself with
/// path-style requests, else with the bucket put in front of its host
/// (`https://bucket.host`), as the client expects of a virtual-hosted
/// endpoint, unless it is there already.
fn bucket_endpoint(spec: &S3Spec, endpoint: &str) -> String {
    if spec.path_style {
        return endpoint.to_string();
    }
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return endpoint.to_string();
    };
    match rest.starts_with(&format!("{}.", spec.bucket)) {
        true => endpoint.to_string(),
        false => format!("{scheme}://{}.{rest}", spec.bucket),
    }
}

fn describe(spec: &S3Spec) -> String {
    match &spec.endpoint {
        Some(endpoint) => format!("{} (endpoint {endpoint})", spec.url()),
        None => format!("{} (AWS, region {})", spec.url(), spec.region),
    }
}

impl ObjectPlace for S3Place {
    fn put_new(&self, object: NamedBytes<'_>, o: &PutOptions) -> Result<PutOutcome, PlaceError> {
        let (name, bytes) = (object.name(), object.bytes());
        if o.retain_until.is_some() && self.lock.is_none() {
            return Err(PlaceError::Refused {
                place: self.describe(),
                status: 0,
                message: "an object asked to be locked, and this remote was not added with \
                          --object-lock: it is not stored unlocked"
                    .to_string(),
            });
        }
        let len = bytes.len() as u64;
        if bytes.len() >= HEAD_FIRST {
            if let Some(size) = self.size(name)? {
                return self.already_there(name, size, len);
            }
        }
        let put = match (self.lock.clone(), o.retain_until) {
            (Some(lock), Some(until)) => {
                let (key, name, bytes) =
                    (self.object_path(name).to_string(), *name, bytes.to_vec());
                self.run(async move { lock.put(key, name, bytes, until).await })
            }
            _ => self.put_unlocked(name, bytes),
        };
        match put {
            Ok(LockedPut::Created) => Ok(PutOutcome::Created),
            Ok(LockedPut::Exists(source)) => {
                // 412 is "there"; AWS also answers 409 to a put racing
                // another one that may yet fail: believe what is stored.
                match self.size(name)? {
                    Some(size) => self.already_there(name, size, len),
                    None => Err(PlaceError::Unreachable {
                        place: self.describe(),
                        source: format!("a concurrent put of {name} has not landed: {source}")
                            .into(),
                    }),
                }
            }
            Err(e) => {
                // Cut off by a server that answered early (see HEAD_FIRST),
                // or by a network that failed after the object landed.
                if e.is_transient() {
                    if let Ok(Some(size)) = self.size(name) {
                        return self.already_there(name, size, len);
                    }
                }
                Err(e)
            }
        }
    }

    fn get(&self, name: &ObjectName) -> Result<Vec<u8>, PlaceError> {
        let path = self.object_path(name);
        let store = self.store.clone();
        let bytes = match self.run(async move { store.get(&path).await?.bytes().await }) {
            Ok(bytes) => bytes.to_vec(),
            Err(e) => match self.error(e, Some(name)) {
                PlaceError::NotFound(_) if self.reads_hidden => self.get_hidden(name, None)?,
                e => return Err(e),
            },
        };
        if !name.matches(&bytes) {
            return Err(PlaceError::Damaged {
                name: *name,
                what: "the stored bytes do not hash to the name",
            });
        }
        Ok(bytes)
    }

    fn get_range(&self, name: &ObjectName, r: Range<u64>) -> Result<Vec<u8>, PlaceError> {
        if r.start > r.end {
            return Err(PlaceError::Refused {
                place: self.describe(),
                status: 0,
                message: format!("{name}: range {}..{} runs backward", r.start, r.end),
            });
        }
        let short = PlaceError::Damaged {
            name: *name,
            what: "shorter than the range read",
        };
        if r.is_empty() {
            // S3 has no empty range; the object must still reach r.end.
            return match self.size(name)? {
                Some(size) if size >= r.end => Ok(Vec::new()),
                Some(_) => Err(short),
                None => Err(PlaceError::NotFound(*name)),
            };
        }
        let path = self.object_path(name);
        let want = r.end - r.start;
        let (store, range) = (self.store.clone(), r.clone());
        let got = match self.run(async move { store.get_range(&path, range).await }) {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(e) => match self.error(e, Some(name)) {
                PlaceError::NotFound(_) if self.reads_hidden => {
                    self.get_hidden(name, Some(r.clone()))
                }
                e => Err(e),
            },
        };
        match got {
            Ok(bytes) if bytes.len() as u64 == want => Ok(bytes),
            Ok(_) => Err(short),
            // A range past the end is refused (416) or clipped: the object
            // is short, as it would be in any other place.
            Err(e @ PlaceError::Refused { .. }) => match self.size(name)? {
                Some(size) if size < r.end => Err(short),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    fn size(&self, name: &ObjectName) -> Result<Option<u64>, PlaceError> {
        let path = self.object_path(name);
        let store = self.store.clone();
        match self.run(async move { store.head(&path).await }) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) => match self.error(e, Some(name)) {
                PlaceError::NotFound(_) if self.reads_hidden => {
                    Ok(self.hidden_version(name)?.map(|v| v.size))
                }
                PlaceError::NotFound(_) => Ok(None),
                e => Err(e),
            },
        }
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<(ObjectName, u64)>, PlaceError> {
        let folder = self.path(kind.folder());
        let stored: Vec<(String, u64)> = match self.reads_hidden {
            // Hidden objects too: every key with a version that is not a
            // delete marker (phivault's own deletes remove every version).
            true => {
                let (sdk, prefix) = (self.sdk.clone(), format!("{folder}/"));
                let (versions, _) =
                    self.run(async move { sdk.versions_under(&prefix, None).await })?;
                versions.into_iter().map(|v| (v.key, v.size)).collect()
            }
            // The stream follows the continuation tokens: every page.
            false => {
                let store = self.store.clone();
                let metas: Vec<object_store::ObjectMeta> = self
                    .run(async move { store.list(Some(&folder)).try_collect().await })
                    .map_err(|e| self.error(e, None))?;
                metas
                    .into_iter()
                    .map(|m| (m.location.to_string(), m.size))
                    .collect()
            }
        };
        let skip = match self.spec.prefix.is_empty() {
            true => 0,
            false => self.spec.prefix.len() + 1,
        };
        let mut out = Vec::with_capacity(stored.len());
        for (location, size) in stored {
            match location
                .get(skip..)
                .and_then(|key| ObjectName::from_key(key).ok())
            {
                Some(name) if name.kind == kind => out.push((name, size)),
                _ => tracing::warn!("{}: {location}: not an object, skipped", self.describe()),
            }
        }
        out.sort_unstable();
        out.dedup_by_key(|(name, _)| *name);
        Ok(out)
    }

    fn delete(&self, name: &ObjectName) -> Result<(), PlaceError> {
        if let Some(lock) = self.lock.clone() {
            let (key, name) = (self.object_path(name).to_string(), *name);
            let now = jiff::Timestamp::now();
            return self.run(async move { lock.delete(key, name, now).await });
        }
        let path = self.object_path(name);
        let store = self.store.clone();
        match self.run(async move { store.delete(&path).await }) {
            Ok(()) => Ok(()),
            Err(e) => match self.error(e, Some(name)) {
                PlaceError::NotFound(_) => Ok(()),
                e => Err(e),
            },
        }
    }

    fn retain_until(&self, name: &ObjectName) -> Result<Option<jiff::Timestamp>, PlaceError> {
        if let Some(lock) = self.lock.clone() {
            let (key, name) = (self.object_path(name).to_string(), *name);
            return self.run(async move { lock.retain_until(&key, None, name).await });
        }
        // Without Object Lock nothing is locked, but the object must
        // exist, as in every other place.
        match self.size(name)? {
            Some(_) => Ok(None),
            None => Err(PlaceError::NotFound(*name)),
        }
    }

    fn locks_objects(&self) -> bool {
        self.lock.is_some()
    }

    fn concurrency(&self) -> usize {
        S3_CONCURRENCY.max(rayon::current_num_threads())
    }

    fn describe(&self) -> String {
        describe(&self.spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_read_from_errors_without_a_variant() {
        let generic = |text: &str| object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        };
        let e = generic("Error performing PUT http://x in 1s - Server returned non-2xx status code: 503 Service Unavailable: ");
        assert_eq!(classify(&e), Failure::Status(503));
        assert_eq!(classify(&generic("something else")), Failure::Unknown);
        let e = object_store::Error::NotFound {
            path: "p".into(),
            source: "gone".into(),
        };
        assert_eq!(classify(&e), Failure::Status(404));
    }

    #[test]
    fn the_code_of_an_s3_error_body_is_found() {
        let body = "status code: 403 Forbidden: <Error><Code>InvalidAccessKeyId</Code></Error>";
        assert_eq!(s3_code(body), Some("InvalidAccessKeyId"));
        assert_eq!(s3_code("no body"), None);
    }

    #[test]
    fn a_virtual_hosted_endpoint_names_the_bucket() {
        let mut spec = S3Spec {
            bucket: "clinic".into(),
            prefix: String::new(),
            endpoint: None,
            region: DEFAULT_REGION.into(),
            path_style: false,
            allow_http: false,
            object_lock: false,
        };
        let e = "https://s3.wasabisys.com";
        assert_eq!(bucket_endpoint(&spec, e), "https://clinic.s3.wasabisys.com");
        let e = "https://clinic.s3.wasabisys.com";
        assert_eq!(bucket_endpoint(&spec, e), e);
        spec.path_style = true;
        let e = "http://127.0.0.1:9000";
        assert_eq!(bucket_endpoint(&spec, e), e);
    }

    #[test]
    fn a_description_names_the_place_and_no_secret() {
        let spec = S3Spec {
            bucket: "b".into(),
            prefix: "clinic/x".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: DEFAULT_REGION.into(),
            path_style: true,
            allow_http: true,
            object_lock: false,
        };
        assert_eq!(
            describe(&spec),
            "s3://b/clinic/x (endpoint http://127.0.0.1:9000)"
        );
        let aws = S3Spec {
            endpoint: None,
            prefix: String::new(),
            ..spec
        };
        assert_eq!(describe(&aws), "s3://b (AWS, region us-east-1)");
    }
}
