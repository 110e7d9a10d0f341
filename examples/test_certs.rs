//! Writes a throwaway certificate authority and the certificates keel's TLS
//! tests use, into the directory named on the command line:
//!
//! - `ca.crt`: the test CA; `server.crt`/`server.key`: keel's certificate
//!   (names `localhost`, `127.0.0.1`, `::1`, and any IPs given after the
//!   directory), signed by the CA; `server2.crt`/`server2.key`: a second
//!   one for reload tests (another serial, same names);
//! - `client.crt`/`client.key`: a client certificate signed by the CA (also
//!   what nodes present to each other);
//! - `rogue-ca.crt`, `rogue.crt`/`rogue.key`: a client certificate from
//!   another CA, which a server trusting `ca.crt` must refuse.
//!
//! `cargo run --example test_certs -- DIR [IP ...]`. Test material only: the
//! keys are written unprotected and the CA is thrown away with the directory.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

fn ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>), rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(p, key)))
}

fn leaf(
    cn: &str,
    names: &[String],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), rcgen::Error> {
    let mut p = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    // Nodes are both: servers to their peers' connections and clients of
    // their peers' listeners, with one certificate.
    p.extended_key_usages = vec![usage, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: test_certs DIR [IP ...]")?;
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    names.extend(args);
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text);

    let (ca_pem, issuer) = ca("keel test CA")?;
    write("ca.crt", &ca_pem)?;
    for stem in ["server", "server2"] {
        let (crt, key) = leaf(
            &format!("keel {stem}"),
            &names,
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        )?;
        write(&format!("{stem}.crt"), &crt)?;
        write(&format!("{stem}.key"), &key)?;
    }
    let (crt, key) = leaf(
        "keel client",
        &names,
        ExtendedKeyUsagePurpose::ServerAuth,
        &issuer,
    )?;
    write("client.crt", &crt)?;
    write("client.key", &key)?;

    let (rogue_pem, rogue_issuer) = ca("not keel's CA")?;
    write("rogue-ca.crt", &rogue_pem)?;
    let (crt, key) = leaf(
        "rogue client",
        &names,
        ExtendedKeyUsagePurpose::ServerAuth,
        &rogue_issuer,
    )?;
    write("rogue.crt", &crt)?;
    write("rogue.key", &key)?;
    Ok(())
}
