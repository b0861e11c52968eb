//! A real S3-compatible server: `s3s-fs` (installed by `make tools`) on a free port of
//! 127.0.0.1, storing buckets as folders of a temporary directory. Killed when dropped.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use tempfile::TempDir;

pub const ACCESS_KEY: &str = "ocellus-test-access";
pub const SECRET_KEY: &str = "ocellus-test-secret-0123456789";
pub const REGION: &str = "us-east-1";
const STARTUP: Duration = Duration::from_secs(15);

pub struct S3sFs {
    child: Child,
    pub endpoint: String,
    dir: TempDir,
}

impl S3sFs {
    /// Starts the server and waits until it accepts connections; fails the test when the
    /// binary is missing.
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// A server without credentials: it accepts unsigned (anonymous) requests, as a public
    /// bucket does.
    pub fn start_anonymous() -> Self {
        Self::start_with(false)
    }

    /// Where the server keeps bucket `bucket`'s objects, one file per key.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.dir.path().join("data").join(bucket)
    }

    fn start_with(authenticated: bool) -> Self {
        let binary = binary();
        assert!(
            binary.is_file(),
            "s3s-fs is not installed at {}; run `make tools` (or set OCELLUS_S3S_FS)",
            binary.display()
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("create the s3s-fs root");
        let log = File::create(dir.path().join("s3s-fs.log")).expect("create the s3s-fs log");
        let port = free_port();
        let mut command = Command::new(&binary);
        command.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        if authenticated {
            command.args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]);
        }
        let child = command
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut server = Self { child, endpoint: format!("http://127.0.0.1:{port}"), dir };
        server.wait_until_listening(port);
        server
    }

    /// A bucket is a folder of the server's root.
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir(self.dir.path().join("data").join(bucket)).expect("create the bucket folder");
    }

    /// Uploads through the S3 API, as a user would.
    pub async fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>) {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .build();
        aws_sdk_s3::Client::from_conf(config)
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("PutObject s3://{bucket}/{key}: {}", aws_sdk_s3::error::DisplayErrorContext(e))
            });
    }

    fn wait_until_listening(&mut self, port: u16) {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("s3s-fs exited with {status} before listening: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on {address} within {STARTUP:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("s3s-fs.log")).unwrap_or_default()
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$OCELLUS_S3S_FS` (exported by the Makefile), else where `make tools` puts it.
fn binary() -> PathBuf {
    std::env::var_os("OCELLUS_S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/s3s-fs"))
}

/// A port nothing listens on right now (the OS picks it, so tests in parallel differ).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a local address").port()
}
