//! moto's S3 server on loopback, for what the in-process s3s-fs server does
//! not implement: S3 Object Lock. `scripts/test` installs it, pinned, in
//! /opt/phivault-moto; each test starts its own `moto_server` on a free
//! port and stops it on drop. The test inspects the bucket with boto3 from
//! the same venv: a client phivault did not write.
#![allow(dead_code)]

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VENV: &str = "/opt/phivault-moto";

pub struct MotoServer {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
}

impl MotoServer {
    pub fn start() -> Self {
        let server = Path::new(VENV).join("bin/moto_server");
        assert!(
            server.exists(),
            "{} is missing: the Object Lock tests need moto's S3 server; run scripts/test, \
             which installs it (python3 -m venv {VENV} && {VENV}/bin/pip install \
             \"moto[server]==5.2.6\")",
            server.display()
        );
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("moto_server exited ({status}) before it listened: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        MotoServer {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// `phivault`'s options for this server.
    pub fn flags(&self) -> Vec<String> {
        super::common::replica::s3_flags(&self.endpoint)
    }

    /// Runs the Python `script` with `s3`, a boto3 client of this server,
    /// in scope; its standard output. Fails on an exception.
    pub fn boto3(&self, script: &str) -> String {
        let prelude = format!(
            "import boto3, datetime, json\n\
             s3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='moto', aws_secret_access_key='moto')\n",
            self.endpoint
        );
        let out = Command::new(Path::new(VENV).join("bin/python"))
            .arg("-c")
            .arg(prelude + script)
            .stdin(Stdio::null())
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .output()
            .expect("run the venv's python");
        assert!(
            out.status.success(),
            "boto3 script failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
