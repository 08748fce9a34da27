use super::*;
use crate::mac::MacAddr;
use std::net::Ipv4Addr;

const M1: MacAddr = MacAddr([2, 0, 0, 0, 0xaa, 1]);
const T0: u64 = 1_700_000_000;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, last)
}

#[test]
fn corrupt_file_is_set_aside_and_read_as_empty() {
    let dir = std::env::temp_dir().join(format!("tb-leases-aside-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("site.leases");
    let (db, report) = load_or_set_aside(&path, T0);
    assert!(db.is_empty() && report.is_none(), "missing file is fine");
    fs::write(&path, b"\x00garbage{").expect("write");
    let (db, report) = load_or_set_aside(&path, T0);
    assert!(db.is_empty());
    let report = report.expect("set aside");
    assert!(report.error.to_string().contains("site.leases"));
    let aside = report.moved_to.expect("renamed");
    assert_eq!(aside, dir.join(format!("site.leases.corrupt-{T0}")));
    assert_eq!(fs::read(&aside).expect("kept"), b"\x00garbage{");
    assert!(!path.exists());
    // A good file is read as is.
    let mut good = LeaseDb::default();
    let lease = crate::leases::Lease {
        ip: ip(100),
        expires: T0,
        mac: M1,
        renewed: false,
    };
    good.insert(&[0xff, 1, 2, 3], lease);
    write_lease_file_atomic(&path, &good.to_bytes()).expect("write");
    let (db, report) = load_or_set_aside(&path, T0 + 1);
    assert!(report.is_none());
    assert_eq!(db, good);
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn lease_file_io_round_trip() {
    let dir = std::env::temp_dir().join(format!("tb-leases-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("site.leases");
    assert!(read_lease_file(&path).expect("missing is empty").is_empty());
    let mut db = LeaseDb::default();
    let lease = crate::leases::Lease {
        ip: ip(100),
        expires: T0,
        mac: M1,
        renewed: true,
    };
    db.insert(&[1, 2, 0, 0, 0, 0xaa, 1], lease);
    write_lease_file_atomic(&path, &db.to_bytes()).expect("write");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(read_lease_file(&path).expect("read"), db);
    fs::write(&path, b"not json").expect("write");
    let err = read_lease_file(&path).expect_err("corrupt").to_string();
    assert!(err.contains("site.leases"), "{err}");
    let leftovers: Vec<_> = fs::read_dir(&dir).expect("ls").collect();
    assert_eq!(leftovers.len(), 1, "no temp files left behind");
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn load_creates_the_directory_and_names_it_when_it_cannot() {
    let dir = std::env::temp_dir().join(format!("tb-leases-load-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let path = dir.join("new").join("site.leases");
    assert!(load(&path).expect("directory created").is_empty());
    assert!(dir.join("new").is_dir());
    // A file where the directory should be: the one error `load` has.
    let blocker = dir.join("blocker");
    fs::write(&blocker, b"").expect("write");
    let err = load(&blocker.join("site.leases")).expect_err("not a directory");
    // The OS's reason is the error's source, rendered after it.
    assert!(std::error::Error::source(&err).is_some());
    let text = crate::error::Chain(&err).to_string();
    assert!(
        text.starts_with(&format!(
            "cannot create the lease directory {}: ",
            blocker.display()
        )),
        "{text}"
    );
    assert_eq!(text.matches("(os error").count(), 1, "said once: {text}");
    fs::remove_dir_all(&dir).expect("cleanup");
}
