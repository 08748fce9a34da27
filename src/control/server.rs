//! The daemon side of the control socket.
//!
//! A thread accepts connections, reads one request per line, checks the
//! caller's credentials and hands the request to the worker through a
//! channel, waking it with an eventfd.
//!
//! Who may do what (SPEC §5): root and members of `control.admin_group`
//! everything; members of `control.group` only what reads (status, leases);
//! anyone else nothing. The caller's user and groups come from the socket
//! itself (`SO_PEERCRED`, `SO_PEERGROUPS`), never from `/proc`, which the
//! unit's `ProtectProc=invisible` hides. The worker answers on a one-shot channel. Requests are tiny and
//! answered in microseconds, so one connection at a time is enough; each has
//! a read timeout so a stuck client cannot block the socket.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use nix::sys::eventfd::EventFd;
use nix::sys::socket::{getsockopt, sockopt};
use nix::unistd::{Gid, Group, Uid, chown};

use super::{Request, Response};

/// A request on its way to the worker, with where to send the answer.
pub struct Command {
    /// What was asked.
    pub request: Request,
    /// Where the answer goes.
    pub reply: Sender<Response>,
}

/// Errors setting the socket up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Filesystem or socket error.
    #[error("control socket {path}")]
    Io {
        /// Socket path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// `control.group` or `control.admin_group` does not exist.
    #[error("control socket {path}: group `{group}` does not exist")]
    NoGroup {
        /// Socket path.
        path: String,
        /// The group.
        group: String,
    },
}

/// Why a caller is refused before its request is read.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// `SO_PEERCRED` failed.
    #[error("could not read the caller's credentials")]
    Credentials(#[source] nix::Error),
    /// `SO_PEERGROUPS` failed.
    #[error("could not read the caller's groups")]
    Groups(#[source] std::io::Error),
    /// Neither root nor in a control group.
    #[error(
        "permission denied: uid {0} is not root and not a member of control.group or \
         control.admin_group"
    )]
    NotAllowed(u32),
}

/// A bound control socket, not yet serving.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    groups: Groups,
}

/// The groups of `[control]`, resolved.
#[derive(Clone, Copy, Default)]
struct Groups {
    read: Option<Gid>,
    admin: Option<Gid>,
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Status and leases.
    Read,
    /// Everything.
    Admin,
}

impl Server {
    /// Binds `path` (creating its directory), mode 0600, or 0660 owned by
    /// `group` (read-only users), else by `admin_group`; with both, an ACL
    /// entry lets `admin_group` open it too. Members of `admin_group` may
    /// change the link. The caller has made sure no live
    /// daemon owns the path.
    pub fn bind(
        path: &Path,
        group: Option<&str>,
        admin_group: Option<&str>,
    ) -> Result<Server, ServerError> {
        let p = path.display().to_string();
        let io = |source| ServerError::Io {
            path: p.clone(),
            source,
        };
        let resolve = |name: Option<&str>| match name {
            None => Ok(None),
            Some(g) => group_id(g).map(Some).ok_or_else(|| ServerError::NoGroup {
                path: p.clone(),
                group: g.to_string(),
            }),
        };
        let groups = Groups {
            read: resolve(group)?,
            admin: resolve(admin_group)?,
        };
        let gid = groups.read.or(groups.admin);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io)?;
        }
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io)?;
        if let Some(g) = gid {
            chown(path, Some(Uid::from_raw(0)), Some(g)).map_err(|e| io(e.into()))?;
        }
        // The file belongs to the read group; the admin group reaches it
        // through an ACL entry.
        if let (Some(read), Some(admin)) = (groups.read, groups.admin) {
            if read != admin {
                if let Err(e) = super::sys::grant_group_rw(path, admin.as_raw()) {
                    tracing::warn!(
                        "control socket {p}: cannot give control.admin_group access ({e}); \
                         its members must also be in control.group to reach the socket"
                    );
                }
            }
        }
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            groups,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves on a thread of its own; requests go to `to_worker`, which is
    /// woken through `waker`.
    pub fn spawn(
        self,
        to_worker: Sender<Command>,
        waker: Arc<EventFd>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for conn in self.listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    if serve(conn, self.groups, &to_worker, &waker) == Flow::Stop {
                        break;
                    }
                }
            })
    }
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

fn serve(
    mut conn: UnixStream,
    groups: Groups,
    to_worker: &Sender<Command>,
    waker: &EventFd,
) -> Flow {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let read = BufReader::new(&conn).take(4096).read_line(&mut line);
    let mut flow = Flow::Continue;
    let resp = match (read, authorize(&conn, groups)) {
        (Err(e), _) => Response::error(format!("could not read the request: {e}")),
        (_, Err(why)) => Response::error(crate::error::Chain(&why).to_string()),
        (Ok(_), Ok(access)) => match serde_json::from_str::<Request>(line.trim()) {
            Err(e) => Response::error(format!("malformed request: {e}")),
            Ok(request) if access == Access::Read && !is_read_only(&request) => {
                Response::error(format!(
                    "permission denied: `{}` changes the link and needs root or membership \
                     in control.admin_group; control.group may only read (status, leases)",
                    verb(&request)
                ))
            }
            Ok(request) => {
                let (reply, answer) = mpsc::channel();
                if request == Request::Down {
                    flow = Flow::Stop;
                }
                ask(to_worker, waker, Command { request, reply }, &answer)
            }
        },
    };
    let mut out = serde_json::to_string(&resp).expect("responses always serialize");
    out.push('\n');
    let _ = conn.write_all(out.as_bytes());
    flow
}

fn ask(
    to_worker: &Sender<Command>,
    waker: &EventFd,
    cmd: Command,
    answer: &Receiver<Response>,
) -> Response {
    let down = cmd.request == Request::Down;
    if to_worker.send(cmd).is_err() {
        return Response::error("the link is shutting down");
    }
    let _ = waker.write(1);
    // Taking a link down runs hooks; give it time.
    let wait = if down {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(5)
    };
    answer
        .recv_timeout(wait)
        .unwrap_or_else(|_| Response::error("the daemon did not answer in time"))
}

/// Whether `request` only reads.
fn is_read_only(request: &Request) -> bool {
    match request {
        Request::Status | Request::Leases => true,
        Request::Down | Request::Reload | Request::Role { .. } => false,
    }
}

/// The CLI command that sends `request`, for messages.
fn verb(request: &Request) -> &'static str {
    match request {
        Request::Status => "status",
        Request::Leases => "leases",
        Request::Down => "link down",
        Request::Reload => "reload",
        Request::Role { .. } => "role",
    }
}

/// A group's ID by name.
fn group_id(name: &str) -> Option<Gid> {
    Group::from_name(name).ok().flatten().map(|g| g.gid)
}

/// Root or a member of the admin group: [`Access::Admin`]; a member of the
/// read group: [`Access::Read`]; everyone else is refused.
fn authorize(conn: &UnixStream, groups: Groups) -> Result<Access, Refusal> {
    let cred = getsockopt(conn, sockopt::PeerCredentials).map_err(Refusal::Credentials)?;
    if cred.uid() == 0 {
        return Ok(Access::Admin);
    }
    let supplementary = super::sys::peer_groups(conn).map_err(Refusal::Groups)?;
    let member = |g: Option<Gid>| {
        g.is_some_and(|g| cred.gid() == g.as_raw() || supplementary.contains(&g.as_raw()))
    };
    if member(groups.admin) {
        Ok(Access::Admin)
    } else if member(groups.read) {
        Ok(Access::Read)
    } else {
        Err(Refusal::NotAllowed(cred.uid()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_status_and_refuses_garbage() {
        let dir = std::env::temp_dir().join(format!("tb-ctl-{}", std::process::id()));
        let path = dir.join("t.sock");
        let server = Server::bind(&path, None, None).expect("bind");
        let mode = fs::metadata(&path).expect("socket").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (tx, rx) = mpsc::channel::<Command>();
        let waker = Arc::new(EventFd::new().expect("eventfd"));
        server.spawn(tx, waker).expect("thread");
        std::thread::spawn(move || {
            while let Ok(cmd) = rx.recv() {
                let _ = cmd.reply.send(Response {
                    ok: true,
                    ..Response::default()
                });
            }
        });
        let resp = super::super::request(&path, Request::Leases, Duration::from_secs(2));
        // Tests run as root in CI; as another user the credential check refuses.
        if Uid::effective().is_root() {
            assert!(resp.expect("answer").ok);
        } else {
            assert!(resp.is_err());
        }
        let mut s = UnixStream::connect(&path).expect("connect");
        s.write_all(b"{\"cmd\":\"format-disk\"}\n").expect("write");
        let mut answer = String::new();
        BufReader::new(&s).read_line(&mut answer).expect("read");
        let r: Response = serde_json::from_str(&answer).expect("json");
        assert!(!r.ok);
        let _ = fs::remove_dir_all(&dir);
    }
}
