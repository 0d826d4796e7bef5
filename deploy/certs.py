"""A private CA and the certificates NATS needs for TLS, made with the `openssl` command.

    python deploy/certs.py --dir DIR n1=10.0.0.1,h1.example.net n2=10.0.0.2 n3=10.0.0.3

DIR/ca.pem is the CA every client and node trusts (not secret); DIR/ca-key.pem
signs the others and belongs on the operator's machine only, never on a host.
Each NAME=ADDR,... gets DIR/NAME.pem and DIR/NAME-key.pem (0600): a certificate
for those addresses (IPs and DNS names, as clients and routes dial them) usable
both as a server and as a client, because a node presents the same certificate
when it dials another node's route port and the routes verify each other.
Files that exist are kept (a CA is made once); a certificate whose addresses
changed is made again.  Standard library and openssl only, like render.py.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

CA_DAYS = 3650
CERT_DAYS = 825  # what browsers and most TLS stacks still accept for a leaf


class CertError(Exception):
    """openssl is missing or refused; the message says which file and why."""


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise CertError("the openssl command is needed to make certificates: apt-get install openssl")
    done = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise CertError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")


def _private(path: Path) -> None:
    os.chmod(path, 0o600)


def san(addresses: list[str]) -> str:
    """openssl's subjectAltName value: IP:... for addresses, DNS:... for names."""
    parts = []
    for a in addresses:
        try:
            parts.append(f"IP:{ipaddress.ip_address(a)}")
        except ValueError:
            parts.append(f"DNS:{a}")
    return ",".join(parts)


def ensure_ca(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca, key = directory / "ca.pem", directory / "ca-key.pem"
    if not (ca.exists() and key.exists()):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key.name, "-out", ca.name, "-days", str(CA_DAYS), "-subj", "/CN=Valor private CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _private(key)
    return ca, key


def ensure_cert(directory: Path, name: str, addresses: list[str]) -> tuple[Path, Path]:
    """DIR/NAME.pem and DIR/NAME-key.pem for ``addresses``, signed by DIR's CA."""
    if not addresses:
        raise CertError(f"{name}: a certificate needs at least one address or DNS name")
    ca, ca_key = ensure_ca(directory)
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    alt = san(addresses)
    record = directory / f"{name}.san"  # what the certificate was made for: remade when it changes
    if cert.exists() and key.exists() and record.exists() and record.read_text().strip() == alt:
        return cert, key
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName={alt}\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n")
    csr = directory / f"{name}.csr"
    try:
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key.name, "-out", csr.name, "-subj", f"/CN={name}", cwd=directory)
        _private(key)
        _openssl("x509", "-req", "-in", csr.name, "-CA", ca.name, "-CAkey", ca_key.name, "-set_serial",
                 str(int.from_bytes(os.urandom(16), "big") >> 1), "-days", str(CERT_DAYS), "-sha256",
                 "-extfile", ext.name, "-out", cert.name, cwd=directory)
    finally:
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)
    record.write_text(alt + "\n")
    return cert, key


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """``n1=10.0.0.1,h1.example.net`` -> ("n1", ["10.0.0.1", "h1.example.net"])"""
    name, sep, rest = spec.partition("=")
    addresses = [a.strip() for a in rest.split(",") if a.strip()]
    if not sep or not name.strip() or not addresses:
        raise CertError(f"expected NAME=ADDRESS[,ADDRESS...], got {spec!r}")
    return name.strip(), addresses


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, required=True, help="where the CA and the certificates are kept")
    p.add_argument("certs", nargs="*", metavar="NAME=ADDR[,ADDR...]")
    a = p.parse_args(argv)
    try:
        ca, _ = ensure_ca(a.dir)
        made = [ensure_cert(a.dir, *parse_spec(spec))[0] for spec in a.certs]
    except CertError as exc:
        print(f"certs: {exc}", file=sys.stderr)
        return 2
    print(f"CA {ca}; certificates: {', '.join(str(m) for m in made) or 'none asked for'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
