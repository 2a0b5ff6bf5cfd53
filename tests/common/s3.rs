//! A real S3 server on loopback, in the test's process: `s3s-fs` (buckets
//! are folders of `root`) behind `s3s`'s HTTP service with signature
//! checking, served by hyper. Real S3 HTTP, SigV4 and conditional puts
//! included; nothing mocked. `stop` closes the port and every connection,
//! as a server going down does; `restart` serves again on the same port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The only keys the server accepts.
pub const ACCESS_KEY: &str = "PHIVAULTTESTKEY00001";
pub const SECRET_KEY: &str = "phivault-test-secret-key-0123456789abcdef";

pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Where the buckets are (one folder each).
    pub root: PathBuf,
    addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Serves the folder `root` (it must exist) on a free loopback port.
    pub fn start(root: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the S3 server");
        let mut server = S3Server {
            endpoint: String::new(),
            root: root.to_path_buf(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            runtime,
            stop: None,
            serving: None,
        };
        server.serve();
        server
    }

    /// A server on a fresh folder of `dir` with the bucket `bucket`.
    pub fn with_bucket(dir: &Path, bucket: &str) -> Self {
        let root = dir.join("s3-root");
        std::fs::create_dir_all(&root).unwrap();
        let server = Self::start(&root);
        server.make_bucket(bucket);
        server
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Makes a bucket (s3s-fs: a folder of the root).
    pub fn make_bucket(&self, name: &str) {
        std::fs::create_dir(self.root.join(name)).unwrap();
    }

    /// The folder that holds bucket `name`'s objects.
    pub fn bucket_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn serve(&mut self) {
        let addr = self.addr;
        let listener = self
            .runtime
            .block_on(async move {
                let socket = tokio::net::TcpSocket::new_v4()?;
                // The same port again at a restart, despite TIME_WAIT.
                socket.set_reuseaddr(true)?;
                socket.bind(addr)?;
                socket.listen(1024)
            })
            .unwrap_or_else(|e| panic!("the S3 server cannot listen on {addr}: {e}"));
        self.addr = listener.local_addr().unwrap();
        self.endpoint = format!("http://{}", self.addr);
        let fs = s3s_fs::FileSystem::new(&self.root)
            .unwrap_or_else(|e| panic!("s3s-fs on {}: {e:?}", self.root.display()));
        let service = {
            let mut b = s3s::service::S3ServiceBuilder::new(fs);
            b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.build()
        };
        let (stop, mut stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.serving = Some(self.runtime.spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { continue };
                        let conn = http
                            .serve_connection(TokioIo::new(socket), service.clone())
                            .into_owned();
                        connections.spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    _ = &mut stopped => break,
                }
                while connections.try_join_next().is_some() {}
            }
            // The listener goes with this task; aborting the connections
            // closes their sockets mid-request, as a crash would.
            connections.shutdown().await;
        }));
    }

    /// Stops accepting and drops every connection; the port refuses
    /// connections until `restart`.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = self.runtime.block_on(serving);
        }
    }

    /// Serves again, on the same port and the same buckets.
    pub fn restart(&mut self) {
        self.stop();
        self.serve();
    }

    /// The credentials in the environment of a phivault process, and no
    /// proxy between it and loopback.
    pub fn env(cmd: &mut Command) -> &mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env_remove("AWS_SESSION_TOKEN");
        for proxy in [
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
        ] {
            cmd.env_remove(proxy);
        }
        cmd
    }

    /// The options of `remote add` and `recover` for this server.
    pub fn flags(&self) -> Vec<String> {
        super::common::replica::s3_flags(&self.endpoint)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
