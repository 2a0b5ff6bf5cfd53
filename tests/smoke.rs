mod common;

use common::Vault;

#[test]
fn write_read_survives_remount() {
    let mut v = Vault::mounted();
    let data = common::pattern(1, 3 * 65536 + 123);
    std::fs::write(v.path("f.bin"), &data).unwrap();
    std::fs::create_dir(v.path("dir")).unwrap();
    std::fs::write(v.path("dir/small.txt"), b"hello").unwrap();
    v.remount();
    assert_eq!(std::fs::read(v.path("f.bin")).unwrap(), data);
    assert_eq!(std::fs::read(v.path("dir/small.txt")).unwrap(), b"hello");
}
