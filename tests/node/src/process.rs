//! Process supervision: a container is a process group in its own mount and UTS namespaces,
//! with the pod's volume folders bind-mounted at their mount paths, stdout and stderr appended
//! to its log file.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

/// Every live process group the agent started, so it can kill them all when it stops.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// A folder or file of the host shown at `target` inside the container.
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// What to start.
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    pub hostname: String,
    pub mounts: Vec<Mount>,
    pub log: PathBuf,
}

/// A started container process.
pub struct Started {
    pub pid: i32,
    /// Where this run's output starts in the log (a restart appends).
    pub log_offset: u64,
    pub child: tokio::process::Child,
}

fn cstring(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// A mount prepared before `fork`: after it, nothing may allocate.
struct RawMount {
    dirs: Vec<CString>,
    file: Option<CString>,
    source: CString,
    target: CString,
    read_only: bool,
}

fn check(result: libc::c_int, what: &str) -> std::io::Result<()> {
    if result == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    Err(std::io::Error::new(error.kind(), format!("{what}: {error}")))
}

/// Starts `launch`. Missing mount points are created (on the host when they lie outside
/// every volume, as empty folders or files, and left there).
pub fn spawn(launch: &Launch) -> std::io::Result<Started> {
    let mut mounts = Vec::new();
    let mut sorted: Vec<&Mount> = launch.mounts.iter().collect();
    sorted.sort_by_key(|m| m.target.components().count());
    for mount in sorted {
        let is_file = std::fs::metadata(&mount.source)?.is_file();
        let mut dirs = vec![];
        let mut prefix = PathBuf::from("/");
        let parts: Vec<Component> = mount.target.components().skip(1).collect();
        let dir_parts = if is_file { parts.len().saturating_sub(1) } else { parts.len() };
        for part in &parts[..dir_parts] {
            prefix.push(part);
            dirs.push(cstring(&prefix)?);
        }
        mounts.push(RawMount {
            dirs,
            file: is_file.then(|| cstring(&mount.target)).transpose()?,
            source: cstring(&mount.source)?,
            target: cstring(&mount.target)?,
            read_only: mount.read_only,
        });
    }
    let hostname = launch.hostname.clone().into_bytes();
    let working_dir = cstring(Path::new(&launch.working_dir))?;
    let log = File::options().create(true).append(true).open(&launch.log)?;
    let log_offset = log.metadata()?.len();

    let mut command = tokio::process::Command::new(&launch.program);
    command
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only makes system calls on
    // memory prepared above.
    unsafe {
        command.pre_exec(move || {
            check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS), "unshare")?;
            let root = c"/";
            check(
                libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ),
                "making / private",
            )?;
            check(libc::sethostname(hostname.as_ptr().cast(), hostname.len()), "sethostname")?;
            for m in &mounts {
                for dir in &m.dirs {
                    libc::mkdir(dir.as_ptr(), 0o755);
                }
                if let Some(file) = &m.file {
                    let fd =
                        libc::open(file.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                    if fd >= 0 {
                        libc::close(fd);
                    }
                }
                let flags = libc::MS_BIND | libc::MS_REC;
                check(
                    libc::mount(
                        m.source.as_ptr(),
                        m.target.as_ptr(),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    ),
                    "bind mount",
                )?;
                if m.read_only {
                    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                    check(
                        libc::mount(
                            std::ptr::null(),
                            m.target.as_ptr(),
                            std::ptr::null(),
                            flags,
                            std::ptr::null(),
                        ),
                        "read-only remount",
                    )?;
                }
            }
            check(libc::chdir(working_dir.as_ptr()), "chdir")
        });
    }
    let child = command.spawn()?;
    let pid = child.id().map_or(0, |id| id as i32);
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
    Ok(Started { pid, log_offset, child })
}

/// Waits for the process to exit and returns its exit code (128 + signal when killed, as
/// container runtimes report it); whatever it left of its process group is killed.
pub async fn wait(pid: i32, mut child: tokio::process::Child) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let code = match child.wait().await {
        Ok(status) => status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(_) => 128 + libc::SIGKILL,
    };
    signal(pid, libc::SIGKILL);
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
    code
}

/// Sends `sig` to the process group `pgid`.
pub fn signal(pgid: i32, sig: libc::c_int) {
    if pgid > 0 {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(-pgid, sig) };
    }
}

/// SIGTERM to every process group, SIGKILL to those still there after a few seconds.
pub async fn kill_all() {
    let groups: Vec<i32> = GROUPS.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
    groups.iter().for_each(|&g| signal(g, libc::SIGTERM));
    for _ in 0..30 {
        // SAFETY: signal 0 only checks that the group exists.
        if groups.iter().all(|&g| unsafe { libc::kill(-g, 0) } != 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    groups.iter().for_each(|&g| signal(g, libc::SIGKILL));
}

/// The last 80 lines, at most 2 KiB, of what a run wrote to its log after `offset`
/// (`terminationMessagePolicy: FallbackToLogsOnError`).
pub fn log_tail(log: &Path, offset: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(bytes.get(offset as usize..).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(80)..].join("\n");
    if tail.len() > 2048 {
        let mut cut = tail.len() - 2048;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = tail[cut..].to_owned();
    }
    tail
}
