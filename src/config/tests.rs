use super::*;

#[test]
fn scratch() {
    let cases = [
        "[interface]\nnmae = \"x\"\n",
        "[interface]\nmtu = \"x\"\n",
        "[interface]\n[tunnel]\n[[peer]]\nname=\"a\"\nbogus=1\n",
        "[interface]\n[tunnel]\npsk_file=\"a\"\n[[peer]]\nname=\"a\"\n[[peer]]\nname=\"b\"\nendpoint=5\n",
        "[interface]\n[tunnel]\npsk_file=\"a\"\n[[peer]]\nname=\"a\"\n[dhcp]\n[[dhcp.reservation]]\nmac=1\n",
        "[interface\n",
        "[interface]\nmtu = 99999999999999999999\n",
        "\n\n[interface]\n\n[tunnel]\nlisten=\"x\"\n",
        "\n\n[interface]\nmtu=1\n\n[tunnel]\nlisten=\"x\"\n",
        "\n\n[interface]\n\n[tunnel]\n",
        "interface = { mtu = 1 }\n",
    ];
    for c in cases {
        eprintln!(
            "{}",
            Config::parse("x", Path::new("/f.toml"), c).unwrap_err()
        );
    }
    panic!();
}
